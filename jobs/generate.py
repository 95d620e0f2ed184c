"""spark-submit entry point: `retail-ann generate`. See `retail-ann generate --help`."""
import sys

from retail_ann.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
