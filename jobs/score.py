"""spark-submit entry point: `retail-ann score`. See `retail-ann score --help`."""
import sys

from retail_ann.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
