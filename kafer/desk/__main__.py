"""``python -m kafer.desk``: the desk's server, as ``kafer desk`` starts it."""

from .app import main

main()
