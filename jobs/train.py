"""spark-submit entry point: `retail-ann train`. See `retail-ann train --help`."""
import sys

from retail_ann.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
