// The fast pass: flat low-detail albedo plus the G-buffers, in one draw through four render targets. With u_with_sun
// it also writes the asked style's sun term (sun.frag's, computed the same way) into the spare surface channel: the
// game then hands the model its sun without a second draw of the scene.
in vec3 v_world;
in vec3 v_normal;
in vec3 v_view_normal;
flat in float v_mat;
in float v_ao;
in float v_depth;
in vec4 v_clip;
in vec4 v_prev_clip;

uniform vec3 u_palette[16];    // sRGB 0..1, written untouched so the uint8 output equals the palette exactly
uniform vec2 u_size;           // render target size in pixels
uniform bool u_with_sun;       // the style's sun term in o_surface.w (its shadow map bound to u_shadow)

layout(location = 0) out vec4 o_albedo;
layout(location = 1) out vec4 o_normal;
layout(location = 2) out vec4 o_data;   // linear depth, material id, motion x, motion y (pixels, y down)
layout(location = 3) out vec4 o_surface;  // position within the block's face (u, v in [0, 1)), voxel AO, sun

void main() {
    int m = int(v_mat + 0.5);
    o_albedo = vec4(u_palette[m], 1.0);
    o_normal = vec4(normalize(v_view_normal), 1.0);
    vec2 cur = v_clip.xy / v_clip.w;
    vec2 prev = v_prev_clip.xy / v_prev_clip.w;
    vec2 motion = (cur - prev) * 0.5 * u_size;
    o_data = vec4(v_depth, float(m), motion.x, -motion.y);
    vec3 n = normalize(v_normal);
    float sun = u_with_sun ? max(dot(n, u_sun_dir), 0.0) * shadow_at(v_world, n) : 0.0;
    o_surface = vec4(fract(face_uv(v_world, n)), v_ao, sun);
}
