"""spark-submit entry point: `retail-ann import`. See `retail-ann import --help`."""
import sys

from retail_ann.cli import main

if __name__ == "__main__":
    sys.exit(main(["import", *sys.argv[1:]]))
