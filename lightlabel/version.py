__version__ = "0.3.0.dev0"
#: The name on the package index (``pip install lightlabel-torch``); the import name and the command stay
#: ``lightlabel``. The index's ``lightlabel`` is an unrelated project.
DISTRIBUTION = "lightlabel-torch"
