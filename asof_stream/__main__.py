"""``python -m asof_stream`` runs the command line."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="asof-stream")
