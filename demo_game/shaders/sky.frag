// Background of the reference pass: gradient, sun or moon, clouds, stars.
in vec2 v_ndc;
uniform mat4 u_inv_viewproj;   // inverse of projection × rotation-only view: NDC → world direction
out vec4 o_color;

float fbm2(vec2 p) { return fbm3(vec3(p, 0.5)); }

void main() {
    vec4 far = u_inv_viewproj * vec4(v_ndc, 1.0, 1.0);
    vec3 d = normalize(far.xyz / far.w);
    vec3 c = sky_base(d);
    float cos_sun = dot(d, u_sun_dir);
    if (u_mode == 2) {
        // Night: a pale moon and a field of stars that twinkle very little (static in direction).
        c += vec3(0.8, 0.85, 1.0) * smoothstep(0.9993, 0.9996, cos_sun) * 2.0;
        vec3 cell = floor(d * 220.0);
        float star = step(0.996, hash13(cell)) * smoothstep(0.0, 0.25, d.y);
        c += vec3(0.9, 0.9, 1.0) * star * (0.6 + 0.8 * hash13(cell + 7.0));
    } else {
        c += u_sun_color * 8.0 * smoothstep(0.9990, 0.9995, cos_sun);
    }
    if (d.y > 0.0) {
        vec2 uv = d.xz / (d.y + 0.08) * 1.6 + vec2(u_time * 0.01, 0.0);
        float n = fbm2(uv * 1.3);
        if (u_mode == 0 || u_mode == 3) {
            float cover = smoothstep(0.5, 0.78, n) * smoothstep(0.0, 0.15, d.y);
            vec3 lit = (u_mode == 0) ? vec3(1.0) : vec3(1.0, 0.62, 0.45);
            vec3 cloud = mix(lit * 1.1, u_sky_horizon * 0.7, smoothstep(0.6, 0.95, n));
            c = mix(c, cloud, cover * 0.9);
        } else if (u_mode == 1) {
            float cover = smoothstep(0.25, 0.7, n) * smoothstep(0.0, 0.2, d.y);
            c = mix(c, vec3(0.72, 0.75, 0.8), cover * 0.7);
        } else {
            float cover = smoothstep(0.55, 0.85, n) * smoothstep(0.0, 0.2, d.y);
            c = mix(c, vec3(0.12, 0.04, 0.16), cover * 0.8);
        }
    }
    o_color = vec4(tonemap(c), 1.0);
}
