"""The OpenGL face renderer (moderngl): colour, metric depth, face mask and triangle ids.

One :class:`Renderer` owns one OpenGL context (headless EGL by default: Mesa's llvmpipe on a machine
without a GPU, the GPU's driver elsewhere) and releases it on :meth:`Renderer.close`. There is no global
state: two renderers are two contexts. Calls are serialised by a lock and the context is made current on
the calling thread for the duration of each call, so a renderer may be created on one thread and used on
another (e.g. a capture source's reader thread), one call at a time.

GPU buffers (topology, UVs, albedo, textures, framebuffers) are made once and cached; a frame uploads
only the posed vertex positions and normals. Rendering many small crops goes through
:meth:`Renderer.render_batch`, which draws them as tiles of one framebuffer and reads it back once.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import numpy as np

from tracker.core.errors import ConfigError, RenderError
from tracker.core.face_model import FaceModel
from tracker.core.face_model.mesh import MeshLayout, wire_grid
from tracker.core.face_model.sh import check_lighting, sh_ambient, sh_directional
from tracker.core.geometry import MODEL_TO_HEAD
from tracker.core.render_types import Albedo, RenderOutput
from tracker.core.types import FaceCoefficients, Intrinsics, check_array
from tracker.render.camera import projection_matrix
from tracker.render.shaders import BACKGROUND_FS, BACKGROUND_VS, MESH_FS, MESH_VS

log = logging.getLogger(__name__)

CM_TO_M = 0.01
#: Largest framebuffer side; batch tiles wrap onto new rows within it.
MAX_FRAMEBUFFER_PX = 4096
#: Framebuffers kept per size (the least recently used beyond this are released).
_FBO_CACHE_SIZE = 4
#: Vertex buffers cycled through by render_batch.
_BATCH_SLOTS = 8
#: Default background: mid grey.
DEFAULT_BACKGROUND = (128, 128, 128)
#: Overlay lighting: soft front light from above, so the mesh reads as 3D.
OVERLAY_LIGHT = sh_ambient((0.45, 0.45, 0.45)) + sh_directional((0.3, -0.6, -1.0), (0.75, 0.75, 0.75))

Background = np.ndarray | tuple[int, int, int] | None


@dataclasses.dataclass
class _Target:
    fbo: object
    color: object
    aux: object
    depth: object


def _small_gemv(matrix_t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``matrix_t @ x`` in row blocks small enough that OpenBLAS stays single-threaded.

    A multi-threaded BLAS call here costs more than it saves: its worker threads spin after the call and
    compete with the rest of the frame (and llvmpipe's threads) for the CPU; on a 2-core machine the whole
    geometry update was 2-3x slower.
    """
    rows = max(256, 200_000 // max(1, matrix_t.shape[1]))
    out = np.empty(matrix_t.shape[0], np.float32)
    xf = np.ascontiguousarray(x, np.float32)
    for i in range(0, matrix_t.shape[0], rows):
        np.dot(matrix_t[i : i + rows], xf, out=out[i : i + rows])
    return out


class Renderer:
    """Draws the ICT face model with an OpenCV-exact pinhole camera.

    Args:
        model: The face model; loaded from the cache when None.
        backend: moderngl standalone backend (``"egl"`` for headless); None lets moderngl choose.
        near_m: Near clipping distance, metres.
        far_m: Far clipping distance, metres.

    Raises:
        RenderError: if no OpenGL 3.3 context can be created.

    Example::

        with Renderer() as r:
            out = r.render(FaceCoefficients(identity, expression, R, t, lighting), Intrinsics.from_fov(640, 480, 60),
                           albedo=procedural_albedo(r.model, seed=1))
            out.rgb, out.depth_m, out.mask
    """

    def __init__(
        self,
        model: FaceModel | None = None,
        *,
        backend: str | None = "egl",
        near_m: float = 0.05,
        far_m: float = 20.0,
    ) -> None:
        import moderngl  # runtime dependency; imported here so `import tracker.render` stays cheap

        self._mgl = moderngl
        self.model = model if model is not None else FaceModel.load()
        if not (0 < near_m < far_m):
            raise ConfigError(f"Renderer needs 0 < near_m < far_m, got {near_m}, {far_m}")
        self.near_m, self.far_m = float(near_m), float(far_m)
        self.layout = MeshLayout(self.model)
        self._lock = threading.RLock()
        kwargs = {"backend": backend} if backend else {}
        try:
            self._ctx = moderngl.create_standalone_context(require=330, **kwargs)
        except Exception as exc:  # moderngl raises plain Exceptions with the driver's message
            raise RenderError(
                f"cannot create an OpenGL 3.3 context (backend={backend!r}): {exc}. Headless rendering needs "
                "EGL (libEGL + Mesa or a GPU driver)."
            ) from exc
        # The creating thread holds the context current; let go of it so any thread can take it per call.
        self._ctx.__exit__(None, None, None)
        self._closed = False
        self._targets: OrderedDict[tuple[int, int], _Target] = OrderedDict()
        self._identity_key: bytes | None = None
        # Transposed bases: row blocks are contiguous, so _small_gemv needs no copies.
        self._expression_basis_t = np.ascontiguousarray(self.model.expression_basis_cm.T)
        self._identity_basis_t = np.ascontiguousarray(self.model.identity_basis_cm.T)
        self._identity_vertices: np.ndarray | None = None
        self._albedo_obj: Albedo | None = None
        self._face_tex = None
        self._use_tex = False
        self._default_albedo: Albedo | None = None
        self._bg_tex = None
        self._wire: dict[tuple, tuple] = {}
        self._slots: list[tuple[object, object]] = []
        self._region_luts: dict[tuple[str, ...], np.ndarray] = {}
        with self._ctx:
            self._init_gl()
        log.debug("renderer on %s", self.gl_renderer)

    # ------------------------------------------------------------------ setup
    def _init_gl(self) -> None:
        ctx, lay = self._ctx, self.layout
        self.gl_renderer = ctx.info.get("GL_RENDERER", "?")
        self._prog = ctx.program(vertex_shader=MESH_VS, fragment_shader=MESH_FS)
        self._bg_prog = ctx.program(vertex_shader=BACKGROUND_VS, fragment_shader=BACKGROUND_FS)
        n = lay.num_gpu_vertices
        self._vbo_dyn = ctx.buffer(reserve=n * 6 * 4, dynamic=True)
        self._vbo_albedo = ctx.buffer(reserve=n * 3 * 4)
        static = np.concatenate(
            [lay.gpu_uv, lay.gpu_textured[:, None], lay.gpu_hidden[:, None]], axis=1
        ).astype(np.float32)
        self._vbo_static = ctx.buffer(static.tobytes())
        self._ibo = ctx.buffer(lay.gpu_triangles.astype(np.int32).tobytes())
        self._vao = self._make_vao(self._ibo)
        self._bg_vao = ctx.vertex_array(self._bg_prog, [])
        self._prog["u_scale"].value = CM_TO_M
        self._prog["u_offset_m"].value = 0.0
        self._prog["u_face_tex"].value = 0
        self._bg_prog["u_image"].value = 1
        self._set_albedo(None)

    def _make_vao(self, ibo, vbo_dyn=None):
        return self._ctx.vertex_array(
            self._prog,
            [
                (vbo_dyn if vbo_dyn is not None else self._vbo_dyn, "3f 3f", "in_pos", "in_normal"),
                (self._vbo_albedo, "3f", "in_albedo"),
                (self._vbo_static, "2f 1f 1f", "in_uv", "in_textured", "in_hidden"),
            ],
            index_buffer=ibo,
            index_element_size=4,
        )

    def _target(self, width: int, height: int) -> _Target:
        key = (width, height)
        if key in self._targets:
            self._targets.move_to_end(key)
            return self._targets[key]
        if width > MAX_FRAMEBUFFER_PX or height > MAX_FRAMEBUFFER_PX:
            raise ConfigError(f"render size {width}x{height} exceeds {MAX_FRAMEBUFFER_PX} px")
        ctx = self._ctx
        color = ctx.texture((width, height), 4)
        aux = ctx.texture((width, height), 2, dtype="f4")
        depth = ctx.depth_renderbuffer((width, height))
        fbo = ctx.framebuffer(color_attachments=[color, aux], depth_attachment=depth)
        self._targets[key] = t = _Target(fbo, color, aux, depth)
        while len(self._targets) > _FBO_CACHE_SIZE:
            _, old = self._targets.popitem(last=False)
            for obj in (old.fbo, old.color, old.aux, old.depth):
                obj.release()
        return t

    # ------------------------------------------------------------------ inputs
    def _check_open(self) -> None:
        if self._closed:
            raise RenderError("the renderer is closed")

    def _set_albedo(self, albedo: Albedo | None) -> None:
        """Uploads per-vertex colours and the face texture when the albedo object changes."""
        if albedo is not None and albedo is self._albedo_obj:
            return
        if albedo is None:
            if self._default_albedo is None:
                from tracker.core.face_model.albedo import region_albedo  # flat colours per part

                self._default_albedo = region_albedo(self.model)
            albedo = self._default_albedo
            if albedo is self._albedo_obj:
                return
        if not isinstance(albedo, Albedo):
            raise ConfigError(f"albedo must be an Albedo, got {type(albedo).__name__}")
        v = self.model.num_vertices
        if albedo.vertex_rgb.shape != (v, 3):
            raise ConfigError(
                f"Albedo.vertex_rgb: expected ({v},3) colours for the full mesh, got {albedo.vertex_rgb.shape}"
            )
        self._vbo_albedo.write(
            np.ascontiguousarray(albedo.vertex_rgb[self.layout.gpu_vertex], np.float32).tobytes()
        )
        self._use_tex = albedo.face_texture is not None
        if self._use_tex:
            h, w = albedo.face_texture.shape[:2]
            if self._face_tex is None or self._face_tex.size != (w, h):
                if self._face_tex is not None:
                    self._face_tex.release()
                self._face_tex = self._ctx.texture((w, h), 3, alignment=1)
                self._face_tex.filter = (self._mgl.LINEAR_MIPMAP_LINEAR, self._mgl.LINEAR)
                self._face_tex.repeat_x = self._face_tex.repeat_y = False
            self._face_tex.write(albedo.face_texture)
            self._face_tex.build_mipmaps()
        # Keep the object alive so an identity check can never match a recycled id().
        self._albedo_obj = albedo

    def model_vertices_cm(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        """(V,3) float32 model-frame vertices (cm), caching the identity part between calls."""
        identity, expression = self.model.check_coefficients(identity, expression)
        key = identity.tobytes()
        if key != self._identity_key:
            base = self.model.neutral_cm.reshape(-1).astype(np.float32)
            k = identity.shape[0]
            if k:
                padded = np.zeros(self.model.num_identities, np.float32)
                padded[:k] = identity
                base = base + _small_gemv(self._identity_basis_t, padded)
            self._identity_vertices = base
            self._identity_key = key
        out = _small_gemv(self._expression_basis_t, expression)
        out += self._identity_vertices
        return out.reshape(-1, 3)

    def _upload_vertices(self, params: FaceCoefficients, vbo=None) -> tuple[np.ndarray, np.ndarray]:
        verts = self.model_vertices_cm(params.identity, params.expression)
        normals = self.layout.vertex_normals(verts)
        idx = self.layout.gpu_vertex
        data = np.empty((idx.size, 6), np.float32)
        np.take(verts, idx, axis=0, out=data[:, :3])
        np.take(normals, idx, axis=0, out=data[:, 3:])
        (vbo if vbo is not None else self._vbo_dyn).write(data)
        return verts, normals

    def _batch_slot(self, j: int):
        """(vbo, vao) of batch slot j: separate vertex buffers let the driver queue every tile's draw
        without waiting for the previous one to finish reading its buffer."""
        k = j % _BATCH_SLOTS
        while len(self._slots) <= k:
            vbo = self._ctx.buffer(reserve=self.layout.num_gpu_vertices * 6 * 4, dynamic=True)
            self._slots.append((vbo, self._make_vao(self._ibo, vbo)))
        return self._slots[k]

    def _set_pose(self, params: FaceCoefficients, intrinsics: Intrinsics, lighting: np.ndarray) -> None:
        rot = (params.rotation @ MODEL_TO_HEAD.astype(np.float64)).astype(np.float32)
        # GLSL matrices are column-major: upload the transposes.
        self._prog["u_rot"].write(np.ascontiguousarray(rot.T).tobytes())
        self._prog["u_trans"].value = tuple(float(x) for x in params.translation_m)
        proj = projection_matrix(intrinsics, self.near_m, self.far_m)
        self._prog["u_proj"].write(np.ascontiguousarray(proj.T).tobytes())
        self._prog["u_light"].write(np.ascontiguousarray(lighting, np.float32).tobytes())

    def _prepare_background(self, background: Background, width: int, height: int) -> None:
        """Sets the background program up for an image (uploaded to texture unit 1) or a colour."""
        if background is None:
            background = DEFAULT_BACKGROUND
        if isinstance(background, np.ndarray):
            check_array("background", background, (height, width, 3), np.uint8)
            if self._bg_tex is None or self._bg_tex.size != (width, height):
                if self._bg_tex is not None:
                    self._bg_tex.release()
                self._bg_tex = self._ctx.texture((width, height), 3, alignment=1)
            self._bg_tex.write(np.ascontiguousarray(background).tobytes())
            self._bg_tex.use(1)
            self._bg_prog["u_use_image"].value = True
            return
        try:
            rgb = tuple(float(c) for c in background)
        except (TypeError, ValueError):
            rgb = ()
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise ConfigError(
                f"background must be an (H,W,3) uint8 image or 3 values in 0..255, got {background!r}"
            )
        self._bg_prog["u_use_image"].value = False
        self._bg_prog["u_color"].value = tuple(c / 255.0 for c in rgb)

    # ------------------------------------------------------------------ drawing
    def _cull_back_faces(self) -> None:
        # ICT triangles wind counter-clockwise seen from outside; the projection mirrors y (image row 0 is
        # window row 0), which makes front faces clockwise in window coordinates. Culling back faces
        # halves the rasteriser's triangle work (the mouth socket's inside faces the camera, so it stays).
        self._ctx.front_face = "cw"
        self._ctx.enable(self._mgl.CULL_FACE)

    def _draw_mesh(self, vao=None) -> None:
        ctx = self._ctx
        ctx.enable(self._mgl.DEPTH_TEST)
        self._cull_back_faces()
        ctx.depth_func = "<"
        if self._use_tex:
            self._face_tex.use(0)
        self._prog["u_use_tex"].value = self._use_tex
        self._prog["u_flat"].value = False
        self._prog["u_offset_m"].value = 0.0
        self._prog["u_alpha"].value = 1.0
        (vao if vao is not None else self._vao).render(self._mgl.TRIANGLES)

    def _draw_background(self, origin: tuple[int, int]) -> None:
        ctx = self._ctx
        ctx.disable(self._mgl.DEPTH_TEST | self._mgl.CULL_FACE)
        self._bg_prog["u_origin"].value = origin
        self._bg_vao.render(self._mgl.TRIANGLES, vertices=3)

    def _read(self, target: _Target, viewport: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        w, h = viewport[2], viewport[3]
        rgb = np.frombuffer(target.fbo.read(viewport, components=3, attachment=0), np.uint8).reshape(h, w, 3)
        aux = np.frombuffer(target.fbo.read(viewport, components=2, attachment=1, dtype="f4"), np.float32)
        return rgb, aux.reshape(h, w, 2)

    def _output(self, rgb, aux, intrinsics: Intrinsics, triangle_ids: bool) -> RenderOutput:
        ids = aux[..., 1].astype(np.int32) - 1
        depth = np.ascontiguousarray(aux[..., 0])
        return RenderOutput(
            rgb=np.ascontiguousarray(rgb),
            depth_m=depth,
            mask=self.layout.mask_from_ids(ids),
            intrinsics=intrinsics,
            triangle_ids=ids if triangle_ids else None,
        )

    # ------------------------------------------------------------------ public API
    def render(
        self,
        params: FaceCoefficients,
        intrinsics: Intrinsics,
        albedo: Albedo | None = None,
        background: Background = None,
        *,
        triangle_ids: bool = False,
    ) -> RenderOutput:
        """Renders one face.

        Args:
            params: Coefficients, pose and lighting.
            intrinsics: Camera; the output has its size. Distortion is ignored (pinhole rendering).
            albedo: Surface colours; None gives flat colours per part (:func:`region_albedo`).
            background: (H,W,3) uint8 RGB image of the output size, an RGB colour (0..255), or None
                for mid grey.
            triangle_ids: Also return per-pixel triangle ids.

        Returns:
            The rendered colour, depth (metres, 0 = background), face mask and optionally triangle ids.

        Raises:
            ConfigError: on inputs of the wrong type, shape or size.
            RenderError: if the renderer is closed or OpenGL fails.
        """
        if not isinstance(params, FaceCoefficients):
            raise ConfigError(f"params must be FaceCoefficients, got {type(params).__name__}")
        if not isinstance(intrinsics, Intrinsics):
            raise ConfigError(f"intrinsics must be Intrinsics, got {type(intrinsics).__name__}")
        w, h = int(intrinsics.width), int(intrinsics.height)
        with self._lock:
            self._check_open()
            with self._ctx:
                try:
                    self._set_albedo(albedo)
                    target = self._target(w, h)
                    target.fbo.use()
                    viewport = (0, 0, w, h)
                    self._ctx.viewport = viewport
                    self._prepare_background(background, w, h)
                    target.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                    self._draw_background((0, 0))
                    self._upload_vertices(params)
                    self._set_pose(params, intrinsics, params.lighting)
                    self._draw_mesh()
                    rgb, aux = self._read(target, viewport)
                except self._mgl.Error as exc:
                    raise RenderError(f"OpenGL failed while rendering: {exc}") from exc
        return self._output(rgb, aux, intrinsics, triangle_ids)

    def render_batch(
        self,
        params: Sequence[FaceCoefficients],
        intrinsics: Intrinsics | Sequence[Intrinsics],
        albedo: Albedo | Sequence[Albedo] | None = None,
        backgrounds: Sequence[Background] | Background = None,
        *,
        triangle_ids: bool = False,
    ) -> list[RenderOutput]:
        """Renders many small views (e.g. training crops) as tiles of one framebuffer.

        All views share one size; each has its own parameters, camera and background, and either all
        share one albedo (fastest: uploaded once) or each has its own.
        Tiles are drawn with per-tile viewports, so a face never bleeds into a neighbour, and the whole
        framebuffer is read back once, which is what makes this faster than calling :meth:`render` in a loop.

        Args:
            params: N face parameter sets.
            intrinsics: One camera for all views, or N cameras of the same size.
            albedo: Surface colours shared by the batch, or N of them (None: flat per-part colours).
            backgrounds: One background for all, or N (each an image of the view size, a colour, or None).
            triangle_ids: Also return per-pixel triangle ids.

        Returns:
            N :class:`RenderOutput`, in order.
        """
        n = len(params)
        if n == 0:
            return []
        cams = [intrinsics] * n if isinstance(intrinsics, Intrinsics) else list(intrinsics)
        bgs = (
            list(backgrounds)
            if isinstance(backgrounds, list | tuple)
            and len(backgrounds) == n
            and not (n == 3 and all(isinstance(b, int | np.integer) for b in backgrounds))
            else [backgrounds] * n
        )
        if len(cams) != n:
            raise ConfigError(f"render_batch: {n} params but {len(cams)} intrinsics")
        albedos = list(albedo) if isinstance(albedo, list | tuple) else [albedo] * n
        if len(albedos) != n:
            raise ConfigError(f"render_batch: {n} params but {len(albedos)} albedos")
        for p in params:
            if not isinstance(p, FaceCoefficients):
                raise ConfigError(f"render_batch: params must be FaceCoefficients, got {type(p).__name__}")
        w, h = int(cams[0].width), int(cams[0].height)
        if any((c.width, c.height) != (w, h) for c in cams):
            raise ConfigError("render_batch: all views must have the same size")
        cols = max(1, min(n, MAX_FRAMEBUFFER_PX // w))
        rows_per_pass = max(1, MAX_FRAMEBUFFER_PX // h)
        per_pass = cols * rows_per_pass
        out: list[RenderOutput] = []
        with self._lock:
            self._check_open()
            with self._ctx:
                try:
                    for start in range(0, n, per_pass):
                        chunk = range(start, min(n, start + per_pass))
                        rows = -(-len(chunk) // cols)
                        fw, fh = cols * w, rows * h
                        target = self._target(fw, fh)
                        target.fbo.use()
                        self._ctx.scissor = None
                        target.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                        for j, i in enumerate(chunk):
                            x0, y0 = (j % cols) * w, (j // cols) * h
                            vp = (x0, y0, w, h)
                            self._ctx.viewport = vp
                            self._ctx.scissor = vp
                            self._prepare_background(bgs[i], w, h)
                            self._draw_background((x0, y0))
                            self._set_albedo(albedos[i])
                            vbo, vao = self._batch_slot(j)
                            self._upload_vertices(params[i], vbo)
                            self._set_pose(params[i], cams[i], params[i].lighting)
                            self._draw_mesh(vao)
                        self._ctx.scissor = None
                        rgb, aux = self._read(target, (0, 0, fw, fh))
                        for j, i in enumerate(chunk):
                            x0, y0 = (j % cols) * w, (j // cols) * h
                            out.append(
                                self._output(
                                    rgb[y0 : y0 + h, x0 : x0 + w],
                                    aux[y0 : y0 + h, x0 : x0 + w],
                                    cams[i],
                                    triangle_ids,
                                )
                            )
                except self._mgl.Error as exc:
                    raise RenderError(f"OpenGL failed while rendering a batch: {exc}") from exc
        return out

    def overlay(
        self,
        image: np.ndarray,
        faces: FaceCoefficients | Sequence[FaceCoefficients],
        intrinsics: Intrinsics,
        *,
        mode: Literal["wireframe", "shaded"] = "wireframe",
        opacity: float = 0.7,
        color: tuple[int, int, int] = (80, 255, 120),
        region: str = "narrow_face",
        wire_cells: int | None = 40,
    ) -> np.ndarray:
        """Draws fitted meshes over a camera frame (the preview).

        Hidden parts are removed with the full head's depth, so only the visible side of the mesh shows.

        Args:
            image: (H,W,3) uint8 RGB camera frame matching ``intrinsics``.
            faces: One or more faces to draw.
            intrinsics: The frame's camera.
            mode: ``"wireframe"`` draws lines over ``region``; ``"shaded"`` draws the full head's surface
                in ``color``, lit by a soft front light.
            opacity: 0 (invisible) .. 1 (opaque).
            color: RGB 0..255 of the lines or surface.
            region: Face-model region the wireframe covers (``narrow_face`` or ``face``).
            wire_cells: Wireframe as a grid of this many cells across the region's UV square (readable at
                camera resolution); None draws the model's own triangle edges (dense).

        Returns:
            (H,W,3) uint8 RGB, a new image.
        """
        if isinstance(faces, FaceCoefficients):
            faces = [faces]
        for f in faces:
            if not isinstance(f, FaceCoefficients):
                raise ConfigError(f"overlay faces must be FaceCoefficients, got {type(f).__name__}")
        if mode not in ("wireframe", "shaded"):
            raise ConfigError(f"overlay mode must be 'wireframe' or 'shaded', got {mode!r}")
        if not 0.0 <= opacity <= 1.0:
            raise ConfigError(f"overlay opacity must be in [0, 1], got {opacity}")
        if len(color) != 3:
            raise ConfigError(f"overlay colour must be RGB, got {color!r}")
        if wire_cells is not None and not 2 <= int(wire_cells) <= 400:
            raise ConfigError(f"wire_cells must be in 2..400 or None, got {wire_cells}")
        w, h = int(intrinsics.width), int(intrinsics.height)
        check_array("overlay image", image, (h, w, 3), np.uint8)
        mgl = self._mgl
        with self._lock:
            self._check_open()
            with self._ctx:
                ctx, prog = self._ctx, self._prog
                target = self._target(w, h)
                target.fbo.use()
                ctx.viewport = (0, 0, w, h)
                self._prepare_background(image, w, h)
                target.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                self._draw_background((0, 0))
                prog["u_use_tex"].value = False
                prog["u_flat"].value = True
                prog["u_flat_color"].value = tuple(c / 255.0 for c in color)
                for face in faces:
                    verts, normals = self._upload_vertices(face)
                    self._set_pose(face, intrinsics, check_lighting(OVERLAY_LIGHT))
                    ctx.enable(mgl.DEPTH_TEST)
                    self._cull_back_faces()
                    ctx.depth_func = "<="
                    # Depth pre-pass of the whole head: hides the far side and other parts.
                    target.fbo.color_mask = ((False,) * 4, (False,) * 4)
                    self._vao.render(mgl.TRIANGLES)
                    target.fbo.color_mask = ((True,) * 4, (True,) * 4)
                    ctx.enable(mgl.BLEND)
                    ctx.blend_func = mgl.SRC_ALPHA, mgl.ONE_MINUS_SRC_ALPHA
                    prog["u_alpha"].value = float(opacity)
                    if mode == "shaded":
                        # Depth equal to the pre-pass: only the nearest surface blends, once.
                        self._vao.render(mgl.TRIANGLES)
                    elif wire_cells is None:
                        prog["u_offset_m"].value = 0.0005
                        ctx.wireframe = True
                        self._dense_wire_vao(region).render(mgl.TRIANGLES)
                        ctx.wireframe = False
                    else:
                        prog["u_offset_m"].value = 0.0005
                        self._draw_wire_grid(region, int(wire_cells), verts, normals)
                    prog["u_offset_m"].value = 0.0
                    ctx.disable(mgl.BLEND)
                rgb, _ = self._read(target, (0, 0, w, h))
        return np.ascontiguousarray(rgb)

    def region_mask(
        self, triangle_ids: np.ndarray, regions: str | Sequence[str] = "narrow_face"
    ) -> np.ndarray:
        """Pixels showing given model regions, from a render's ``triangle_ids``.

        Args:
            triangle_ids: (H,W) int32 from :meth:`render` with ``triangle_ids=True``.
            regions: Region name(s) of :attr:`FaceModel.regions`, e.g. ``"narrow_face"`` (the skin a
                photometric loss should see), ``"teeth"``, ``("eyeball_left", "eyeball_right")``.

        Returns:
            (H,W) bool.
        """
        names = (regions,) if isinstance(regions, str) else tuple(regions)
        ids = check_array("triangle_ids", triangle_ids, (None, None), np.int32)
        if names not in self._region_luts:
            self._region_luts[names] = self.layout.region_lookup(self.model, names)
        return self._region_luts[names][ids + 1]

    def _dense_wire_vao(self, region: str):
        key = ("dense", region)
        if key not in self._wire:
            reg = self.model.region(region)
            t1 = min(reg.t1, self.layout.num_draw_triangles)
            ibo = self._ctx.buffer(
                np.ascontiguousarray(self.layout.gpu_triangles[reg.t0 : t1], np.int32).tobytes()
            )
            self._wire[key] = (self._make_vao(ibo), ibo)
        return self._wire[key][0]

    def _draw_wire_grid(self, region: str, cells: int, verts: np.ndarray, normals: np.ndarray) -> None:
        key = ("grid", region, cells)
        if key not in self._wire:
            grid = wire_grid(self.model, region, cells)
            vbo = self._ctx.buffer(reserve=len(grid.weights) * 6 * 4, dynamic=True)
            ibo = self._ctx.buffer(grid.edges.tobytes())
            vao = self._ctx.vertex_array(
                self._prog, [(vbo, "3f 3f", "in_pos", "in_normal")], index_buffer=ibo, index_element_size=4
            )
            self._wire[key] = (vao, vbo, ibo, grid)
        vao, vbo, _, grid = self._wire[key]
        data = np.concatenate([grid.nodes(verts), grid.nodes(normals)], axis=1).astype(np.float32)
        vbo.write(data.tobytes())
        # Lines have no facing; culling applies to polygons only.
        vao.render(self._mgl.LINES)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Releases every GPU object and the context. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                with self._ctx:
                    for t in self._targets.values():
                        for obj in (t.fbo, t.color, t.aux, t.depth):
                            obj.release()
                    self._targets.clear()
            finally:
                self._ctx.release()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close() must not leak a context for the process's life
        try:
            if not getattr(self, "_closed", True):
                self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
