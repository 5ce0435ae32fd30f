"""Recipes: one frozen `*Config` per optimization family and one registered handler; one verb builds any of
them: `build(context, config) -> Variant`. Importing a family module registers its handler."""

from inferopt.recipes.base import BuildContext, RecipeConfig, Variant, build, config_from_dict

__all__ = ["BuildContext", "RecipeConfig", "Variant", "build", "config_from_dict"]
