"""bond-injector."""


def __getattr__(name: str) -> str:
    # The installed distribution's version (pyproject.toml), read on first use: importing
    # importlib.metadata costs the CNI plugin's start-up milliseconds it does not have.
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415

        return version("bond-injector")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
