// World geometry for the fast (G-buffer) pass and the reference pass.
in vec3 in_pos;
in vec3 in_prev;     // where this vertex was on the previous tick (moves only for dynamic objects)
in vec3 in_normal;
in float in_mat;
in float in_ao;

uniform mat4 u_viewproj;
uniform mat4 u_prev_viewproj;
uniform mat4 u_view;

out vec3 v_world;
out vec3 v_normal;
out vec3 v_view_normal;
flat out float v_mat;
out float v_ao;
out float v_depth;
out vec4 v_clip;
out vec4 v_prev_clip;

void main() {
    vec4 w = vec4(in_pos, 1.0);
    v_clip = u_viewproj * w;
    v_prev_clip = u_prev_viewproj * vec4(in_prev, 1.0);
    gl_Position = v_clip;
    v_world = in_pos;
    v_normal = in_normal;
    v_view_normal = mat3(u_view) * in_normal;
    v_mat = in_mat;
    v_ao = in_ao;
    v_depth = -(u_view * w).z;
}
