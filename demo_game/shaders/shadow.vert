in vec3 in_pos;
uniform mat4 u_light_viewproj;
void main() { gl_Position = u_light_viewproj * vec4(in_pos, 1.0); }
