"""GLSL sources of the renderer (OpenGL 3.3 core)."""

from tracker.core.face_model.sh import GLSL_SH

#: Face mesh: model-frame cm in, OpenCV camera frame via uniforms, clip coordinates via the OpenCV-exact
#: projection (tracker.render.camera).
MESH_VS = (
    """
#version 330
uniform mat4 u_proj;
uniform float u_light[27];
uniform bool u_flat;          // overlay: one colour instead of the albedo
uniform vec3 u_flat_color;
uniform mat3 u_rot;     // model frame -> camera frame: R_head_to_cam @ MODEL_TO_HEAD
uniform vec3 u_trans;   // head origin in the camera frame, metres
uniform float u_scale;  // model units -> metres
uniform float u_offset_m;  // push along the normal (overlay lines stay in front of their surface)
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_albedo;
in vec2 in_uv;
in float in_textured;
in float in_hidden;
out vec3 v_pos;
out vec3 v_albedo;
out vec3 v_shading;
out vec2 v_uv;
out float v_textured;
out float v_hidden;
"""
    + GLSL_SH
    + """
void main() {
    vec3 n = normalize(u_rot * in_normal);
    vec3 p = u_rot * (in_pos * u_scale) + u_trans + n * u_offset_m;
    v_pos = p;
    // The mesh is dense (about a pixel per vertex at typical sizes), so SH shading per vertex looks the same
    // as per pixel and costs far less in a software rasteriser.
    v_shading = sh_shading(n, u_light);
    v_albedo = u_flat ? u_flat_color : in_albedo;
    v_uv = in_uv;
    v_textured = in_textured;
    v_hidden = in_hidden;
    gl_Position = u_proj * vec4(p, 1.0);
}
"""
)

MESH_FS = """
#version 330
uniform sampler2D u_face_tex;
uniform bool u_use_tex;
uniform float u_alpha;
in vec3 v_pos;
in vec3 v_albedo;
in vec3 v_shading;
in vec2 v_uv;
in float v_textured;
in float v_hidden;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec2 f_aux;    // (camera z in metres, triangle id + 1)
void main() {
    if (v_hidden > 0.5) discard;  // cornea cap: let the iris behind show
    vec3 albedo = v_albedo;
    if (u_use_tex && v_textured > 0.5) {
        // Texture row 0 is v = 1 (image convention), and textures upload row 0 first.
        albedo = texture(u_face_tex, vec2(v_uv.x, 1.0 - v_uv.y)).rgb;
    }
    f_color = vec4(clamp(albedo * v_shading, 0.0, 1.0), u_alpha);
    f_aux = vec2(v_pos.z, float(gl_PrimitiveID + 1));
}
"""

#: Full-screen triangle that paints the background (an image of the view size or a colour) and clears
#: depth and triangle ids (a framebuffer clear would write the colour into those attachments too).
BACKGROUND_VS = """
#version 330
void main() {
    vec2 p = vec2((gl_VertexID == 1) ? 3.0 : -1.0, (gl_VertexID == 2) ? 3.0 : -1.0);
    gl_Position = vec4(p, 1.0, 1.0);
}
"""

BACKGROUND_FS = """
#version 330
uniform sampler2D u_image;
uniform bool u_use_image;
uniform vec3 u_color;
uniform ivec2 u_origin;   // framebuffer pixel of the image's (0,0) (tiles in batch mode)
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec2 f_aux;
void main() {
    vec3 c = u_use_image ? texelFetch(u_image, ivec2(gl_FragCoord.xy) - u_origin, 0).rgb : u_color;
    f_color = vec4(c, 1.0);
    f_aux = vec2(0.0);  // no surface: depth 0, triangle id -1
}
"""
