"""The trial kinds, one module each: a kind's ``[model]`` table, its network builder and its
runner, registered with :func:`reglab.lab.settings.registry.register`.

Every module of this package is imported on the registry's first lookup, so a new kind is one
new module here (no other file changes). Nothing outside this package imports a kind module to
dispatch: it asks the registry.
"""
