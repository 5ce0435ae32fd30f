import logging

from inferopt.recipes.base import quiet_root_logger


def test_the_quantizers_silence_is_lifted_after_them() -> None:
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    try:
        with quiet_root_logger():
            assert root.level == logging.ERROR
        assert root.level == logging.INFO  # once, recipes left the whole process at ERROR
    finally:
        root.setLevel(before)
