"""Every built-in fault, one module each; importing this package registers them all, and the faults
other installed packages offer (see :func:`mlops_drill.injector.fault.load_plugin_faults`)."""
import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

from mlops_drill.injector.fault import load_plugin_faults  # noqa: E402

# Faults from other packages (entry-point group ``mlops_drill.faults``) join the built-in ones.
load_plugin_faults()
