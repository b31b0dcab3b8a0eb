// The sun G-buffer: the direct sunlight a surface receives from one style's sun, the cosine term times the shadow,
// exactly the factor the reference pass multiplies the sun's colour by. 0 on the sky.
in vec3 v_world;
in vec3 v_normal;

out vec4 o_sun;

void main() {
    vec3 n = normalize(v_normal);
    o_sun = vec4(max(dot(n, u_sun_dir), 0.0) * shadow_at(v_world, n), 0.0, 0.0, 1.0);
}
