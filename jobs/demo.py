"""spark-submit entry point: `retail-ann demo`. See `retail-ann demo --help`."""
import sys

from retail_ann.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
