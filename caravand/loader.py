"""Finding the Workflow and Activity classes that a pool serves.

A module contributes the concrete subclasses of the wanted base that it
defines itself (not those it imports), so decider and activity modules never
need to import each other, and a shared base class is never served twice.
"""

from __future__ import annotations

import importlib
import inspect

from caravand.swf import ConfigError, flatten


def concrete(cls, base) -> bool:
    """A class to serve: a subclass of ``base`` with a name and a version, not abstract."""
    return (
        inspect.isclass(cls)
        and issubclass(cls, base)
        and cls is not base
        and not inspect.isabstract(cls)
        and bool(getattr(cls, "name", None))
        and bool(getattr(cls, "version", None))
    )


def import_module(name: str):
    """Import ``name``; any failure becomes a one-line ConfigError naming the module."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # an import can raise anything; report it, don't crash
        detail = flatten(exc)  # one line, whatever the module raised
        raise ConfigError(f"cannot import module {name!r}: {type(exc).__name__}: {detail}") from exc


def load_classes(module_names: list[str], base) -> dict[tuple[str, str], type]:
    """``{(name, version): class}`` of every concrete ``base`` defined in the modules.

    Raises ConfigError for an unimportable module, a module that defines no
    such class, or two classes with one (name, version).
    """
    found: dict[tuple[str, str], type] = {}
    for module_name in module_names:
        module = import_module(module_name)
        classes = [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and concrete(cls, base)
        ]
        if not classes:
            raise ConfigError(f"module {module_name!r} defines no {base.__name__} class with a name and a version")
        for cls in classes:
            key = (str(cls.name), str(cls.version))
            if key in found and found[key] is not cls:
                other = found[key]
                raise ConfigError(
                    f"{base.__name__} {key[0]} {key[1]} is defined twice: "
                    f"{other.__module__}.{other.__qualname__} and {cls.__module__}.{cls.__qualname__}"
                )
            found[key] = cls
    return found
