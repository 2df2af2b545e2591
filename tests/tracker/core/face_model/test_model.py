"""The cache reproduces the upstream OBJs from the real archive, and the ARKit mapping is exact."""

import numpy as np
import pytest

from tracker.core.assets import iter_folder_files, require
from tracker.core.errors import ConfigError
from tracker.core.face_model import ARKIT_NAMES, FaceModel, arkit_to_ict, ict_to_arkit
from tracker.core.face_model.arkit import ICT_EXPRESSION_NAMES, ONE_TO_ONE_ICT
from tracker.core.face_model.build import parse_obj_vertices

IDENTITY_FILES = {3: "identity003.obj", 42: "identity042.obj", 99: "identity099.obj"}
EXPRESSIONS = ("jawOpen", "eyeBlink_L", "mouthSmile_R", "browInnerUp_L", "mouthPucker", "cheekPuff_R")


@pytest.fixture(scope="module")
def upstream_objs():
    wanted = {"generic_neutral_mesh.obj", *IDENTITY_FILES.values(), *(f"{n}.obj" for n in EXPRESSIONS)}
    files = {}
    for rel, data in iter_folder_files(require("ict-facekit"), "FaceXModel"):
        if rel in wanted:
            files[rel] = parse_obj_vertices(data)
    assert set(files) == wanted
    return files


def test_neutral_identity_and_expressions_rebuild_the_obj_files(face_model: FaceModel, upstream_objs):
    np.testing.assert_array_less(np.abs(face_model.vertices() - upstream_objs["generic_neutral_mesh.obj"]), 1e-4)
    for k, fname in IDENTITY_FILES.items():
        ident = np.zeros(100)
        ident[k] = 1.0
        err = np.abs(face_model.vertices(identity=ident) - upstream_objs[fname]).max()
        assert err < 1e-4, (fname, err)
    for name in EXPRESSIONS:
        expr = np.zeros(53)
        expr[ICT_EXPRESSION_NAMES.index(name)] = 1.0
        err = np.abs(face_model.vertices(expression=expr) - upstream_objs[f"{name}.obj"]).max()
        assert err < 1e-4, (name, err)


def test_regions_and_topology(face_model: FaceModel):
    assert face_model.num_vertices == 26719
    assert face_model.vertices(region="face").shape == (9409, 3)
    assert face_model.vertices(region="narrow_face").shape == (6706, 3)
    tri = face_model.triangles_of("face")
    assert tri.max() < 9409 and tri.min() >= 0
    # 25,836 quads split in two plus 548 triangles
    assert face_model.triangles.shape == (25836 * 2 + 548, 3)
    assert face_model.landmark_ids.shape == (68,) and face_model.landmark_ids.max() < 9409
    # the UV-split mesh covers every triangle corner with its own UV
    np.testing.assert_array_equal(face_model.uv_vertex[face_model.uv_triangles], face_model.triangles)
    np.testing.assert_allclose(face_model.uv_coords[face_model.uv_triangles], face_model.uv[face_model.triangle_uv])


def test_batched_vertices_and_head_frame(face_model: FaceModel):
    rng = np.random.default_rng(0)
    ids, exps = rng.normal(size=(3, 20)), rng.uniform(0, 1, (3, 53))
    batch = face_model.vertices(ids, exps, region="face")
    np.testing.assert_allclose(batch[1], face_model.vertices(ids[1], exps[1], region="face"), atol=1e-4)
    head = face_model.head_vertices_m()
    nose = head[face_model.landmark_ids[30]]
    # head frame: nose along -z, metres; landmarks68() agrees with the vertex array
    assert nose[2] < -0.1
    np.testing.assert_allclose(face_model.landmarks68(), head[face_model.landmark_ids], atol=1e-7)
    right_eye_outer = head[face_model.landmark_ids[36]]  # subject's right eye at -x
    assert right_eye_outer[0] < 0


def test_wrong_coefficient_counts_raise(face_model: FaceModel):
    with pytest.raises(ConfigError, match="53 ICT"):
        face_model.vertices(expression=np.zeros(40))
    with pytest.raises(ConfigError, match="100 modes"):
        face_model.vertices(identity=np.zeros(101))
    with pytest.raises(ConfigError, match="unknown region"):
        face_model.vertices(region="ears")


def test_arkit_names_in_apple_order():
    assert len(ARKIT_NAMES) == 52
    assert ARKIT_NAMES[:7] == ("eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft",
                               "eyeLookUpLeft", "eyeSquintLeft", "eyeWideLeft")  # fmt: skip
    assert ARKIT_NAMES[17] == "jawOpen" and ARKIT_NAMES[43] == "browInnerUp" and ARKIT_NAMES[-1] == "tongueOut"
    assert len(set(ARKIT_NAMES)) == 52


def test_ict_arkit_round_trip():
    rng = np.random.default_rng(0)
    e = rng.uniform(0, 1, (10, 53)).astype(np.float32)
    back = arkit_to_ict(ict_to_arkit(e))
    assert len(ONE_TO_ONE_ICT) == 49
    np.testing.assert_array_equal(back[:, ONE_TO_ONE_ICT], e[:, ONE_TO_ONE_ICT])
    # merged halves come back as their mean
    i_l, i_r = ICT_EXPRESSION_NAMES.index("cheekPuff_L"), ICT_EXPRESSION_NAMES.index("cheekPuff_R")
    np.testing.assert_allclose(back[:, i_l], (e[:, i_l] + e[:, i_r]) / 2, rtol=1e-6)
    a = rng.uniform(0, 1, 52).astype(np.float32)
    a[-1] = 0.0  # tongueOut is not modelled
    np.testing.assert_array_equal(ict_to_arkit(arkit_to_ict(a)), a)
