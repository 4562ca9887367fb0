"""`python -m app`: the same command line as `prefloop`."""

from app.cli import main

if __name__ == "__main__":
    main()
