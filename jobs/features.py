"""spark-submit entry point: `retail-ann features`. See `retail-ann features --help`."""
import sys

from retail_ann.cli import main

if __name__ == "__main__":
    sys.exit(main(["features", *sys.argv[1:]]))
