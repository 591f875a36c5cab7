"""``python -m occlusion_widget``: the ``occlusion-widget`` command."""

from .cli import main

if __name__ == "__main__":
    main()
