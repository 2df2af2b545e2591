"""The ground floor: what every other package stands on, importing nothing else of the project.

* :mod:`tracker.core.errors` -- the exception types.
* :mod:`tracker.core.types` -- the typed objects between stages (``Intrinsics``, ``Frame``, ``FaceState``, ...).
* :mod:`tracker.core.geometry` -- rotations and the head-pose convention.
* :mod:`tracker.core.crop` -- perspective face crops and the crop-relative pose encoding.
* :mod:`tracker.core.face_model` -- the ICT-FaceKit model, its ARKit mapping, albedo and SH lighting.
* :mod:`tracker.core.render_types` -- the renderer's typed inputs and outputs.
* :mod:`tracker.core.assets` -- the asset registry and search path.

``engines/`` and ``calibration/`` import only this package of ``tracker`` (tests/test_import_contract.py).
"""
