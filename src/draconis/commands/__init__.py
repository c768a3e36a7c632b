"""One module per ``draconis`` sub-command, each with ``add_parser(subparsers)``.

``add_parser`` registers the sub-command and sets ``func`` (a callable taking
the parsed arguments and returning an exit status).  Heavy imports happen
inside ``func`` so ``draconis --help`` stays fast.
"""
