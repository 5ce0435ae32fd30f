"""What a model means: load the source model, turn raw input into arrays, arrays into answers."""
