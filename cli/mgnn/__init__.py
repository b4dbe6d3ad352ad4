"""``mgnn``: the microgradnn command line (train, resume, eval, generate, check, plugins,
export, tutorial). A thin layer over :mod:`microgradnn.train`; the library never imports it."""

__all__ = ["main"]


def main(argv: "list[str] | None" = None) -> int:
    from .app import main as _main

    return _main(argv)
