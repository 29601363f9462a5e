"""``python -m runpack_api.cli``: the same as the ``runpack`` command."""

from runpack_api.cli import main

main()
