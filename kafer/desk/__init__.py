"""The decision desk: the decision notebook served to the plant's team, each person signed in.

One job per module:

- :mod:`~kafer.desk.serve`: the ``kafer desk`` command (checks, starts the server, waits for it);
- :mod:`~kafer.desk.app`: the server, Voila made safe to share (``python -m kafer.desk``);
- :mod:`~kafer.desk.identity`: who is signed in (the plant's single sign-on through a proxy, local
  accounts, or one person on this computer);
- :mod:`~kafer.desk.accounts` and :mod:`~kafer.desk.state`: the users file, the cookie secret and
  the private folder they live in, outside the lake;
- :mod:`~kafer.desk.rights`: roles, rights and the check an action makes;
- :mod:`~kafer.desk.person`: who a page's kernel acts for, checked again at each action;
- :mod:`~kafer.desk.kernels`: whose kernel is whose, the cap per person, idle ones culled;
- :mod:`~kafer.desk.handlers`: the desk's own routes and the one place that registers them.

Only :mod:`rights`, :mod:`person`, :mod:`accounts` and :mod:`state` are imported in a page's
kernel; the others run in the server (they import Jupyter Server and Voila).
"""

from .serve import DeskError, desk_url, serve

__all__ = ["DeskError", "desk_url", "serve"]
