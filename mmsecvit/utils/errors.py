# Copyright (c) mmsecvit contributors. All rights reserved.
"""The errors a user's input causes, as opposed to the project's bugs.

Every error mmsecvit raises because of something the user gave it (a config
value, a command-line option, a file, the installed libraries) derives from
:class:`MMSecViTUserError`, and its message says what is wrong and how to fix
it. The tools print that message alone and exit with code 2
(:func:`mmsecvit.engine.cli.run_tool`); any other exception is a bug and keeps
its traceback.

Each class also derives from the built-in exception that code raised before
this hierarchy existed (``ValueError``, ``FileNotFoundError``,
``RuntimeError`` ...), so that ``except ValueError`` and
``pytest.raises(FileNotFoundError)`` keep working.

Every class takes a single message, so that code which re-raises an error as
``type(error)(f'more context: {error}')`` (as some versions of MMEngine's
registry do) keeps working too.
"""
from contextlib import contextmanager
from typing import Iterator


class MMSecViTUserError(Exception):
    """Base class of the errors caused by the user's input, not by a bug.

    The message must say what is wrong and how to fix it: the tools print it
    without a traceback.
    """


class ConfigError(MMSecViTUserError):
    """A config value or command-line option that cannot be used."""


class ConfigValueError(ConfigError, ValueError):
    """A config value or option of the right type but a wrong value."""


class ConfigTypeError(ConfigError, TypeError):
    """A config value or option of the wrong type."""


class ConfigKeyError(ConfigError, KeyError):
    """An unknown name (e.g. an arch) or a missing key in a config dict."""

    def __str__(self) -> str:
        # KeyError shows its argument quoted, as a repr; this is a message.
        return Exception.__str__(self)


class MissingFileError(MMSecViTUserError, FileNotFoundError):
    """A file or directory that the user named does not exist."""


class CorruptFileError(MMSecViTUserError, ValueError):
    """A file exists but its content cannot be read (truncated, corrupt or of
    the wrong kind)."""


class UnreadableImageError(CorruptFileError):
    """A file that should be an image cannot be decoded as one."""


class CheckpointMismatchError(MMSecViTUserError, ValueError):
    """A checkpoint that loads but does not fit the model (another arch,
    another layout)."""


class UnsupportedEnvironmentError(MMSecViTUserError, RuntimeError):
    """The machine or the installed software cannot do what was asked (a
    library version, a missing device, a launcher without its variables)."""


class UnsupportedVersionError(UnsupportedEnvironmentError, ImportError):
    """An installed library has a version mmsecvit does not support."""


@contextmanager
def unknown_keys_as_config_errors() -> Iterator[None]:
    """Turn the ``TypeError`` a constructor raises on an unknown keyword
    argument (a misspelt or unknown config key) into a
    :class:`ConfigKeyError` that says what to check; any other
    ``TypeError`` passes unchanged.

    Examples:
        >>> with unknown_keys_as_config_errors():
        ...     model = MODELS.build(cfg.model)
    """
    try:
        yield
    except TypeError as error:
        if 'unexpected keyword argument' not in str(error):
            raise
        raise ConfigKeyError(
            f'{error}. Check the spelling of that key in the config or in '
            '--cfg-options; the class docstring lists the arguments it '
            'takes.') from error
