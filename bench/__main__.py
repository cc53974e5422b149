"""``python -m bench``: run the benchmarks, print the table, write the JSON file."""

from bench._cli import main

raise SystemExit(main())
