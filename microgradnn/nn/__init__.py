"""Floor 3: modules, layers, recurrent cells and sequence layers, losses, initialisation."""

from .module import IncompatibleKeys, Module, Parameter, StateDictError
