// The reference (ground-truth) renderer: procedural textures, sun with a shadow map, voxel AO, sky light, water,
// fog, and a per-style look (snow cover, neon outlines, autumn foliage). Slow by design: it is the training target.
in vec3 v_world;
in vec3 v_normal;
in vec3 v_view_normal;
flat in float v_mat;
in float v_ao;
in float v_depth;
in vec4 v_clip;
in vec4 v_prev_clip;

uniform vec3 u_cam_pos;
uniform float u_ambient;
uniform float u_fog_density;
uniform vec3 u_gems[32];       // collectible centres: they light their surroundings
uniform int u_gem_count;

out vec4 o_color;

const int GRASS = 1, DIRT = 2, SAND = 3, STONE = 4, WATER = 5, WOOD = 6, LEAVES = 7, PLANK = 8, ROOF = 9,
          COBBLE = 10, GLASS = 11, GEM = 12, PLAYER = 13;

struct Surface { vec3 albedo; float spec; float gloss; vec3 emit; };

vec3 neon_color(int m) {
    if (m == GRASS) return vec3(0.05, 1.0, 0.55);
    if (m == STONE) return vec3(0.85, 0.2, 1.0);
    if (m == DIRT || m == WOOD) return vec3(1.0, 0.45, 0.05);
    if (m == SAND) return vec3(1.0, 0.9, 0.2);
    if (m == LEAVES) return vec3(0.2, 1.0, 0.25);
    if (m == PLANK || m == ROOF) return vec3(1.0, 0.1, 0.55);
    if (m == COBBLE) return vec3(0.2, 0.5, 1.0);
    return vec3(0.3, 0.6, 1.0);
}

Surface material(int m, vec3 p, vec3 n, vec3 cell, vec2 uv) {
    Surface s = Surface(vec3(0.5), 0.0, 16.0, vec3(0.0));
    float fy = fract(p.y);
    float top = step(0.5, n.y);
    if (m == GRASS) {
        vec3 g = vec3(0.30, 0.58, 0.16) * (0.7 + 0.55 * fbm3(p * 3.0));
        g *= 0.85 + 0.3 * hash13(floor(p * 16.0));                       // blades
        g = mix(g, vec3(0.55, 0.6, 0.2), 0.35 * smoothstep(0.55, 0.8, fbm3(p * 0.4)));  // dry patches
        vec3 d = vec3(0.42, 0.29, 0.17) * (0.75 + 0.4 * noise3(p * 9.0));
        float band = step(0.78 - 0.12 * noise3(p * 8.0), fy);            // grass overhangs the block's side
        s.albedo = top > 0.5 ? g : mix(d, g * 0.9, band);
        if (u_mode == 3) s.albedo *= vec3(1.25, 0.95, 0.55);
    } else if (m == DIRT) {
        s.albedo = vec3(0.42, 0.29, 0.17) * (0.7 + 0.45 * fbm3(p * 5.0));
        s.albedo = mix(s.albedo, vec3(0.55, 0.5, 0.45), step(0.93, hash13(floor(p * 8.0))));  // pebbles
    } else if (m == SAND) {
        float ripple = sin(p.x * 5.0 + p.z * 2.0 + noise3(p * 2.0) * 4.0) * 0.04;
        s.albedo = vec3(0.86, 0.78, 0.55) * (0.88 + 0.16 * noise3(p * 25.0) + ripple);
    } else if (m == STONE) {
        float crack = smoothstep(0.035, 0.0, abs(noise3(p * 3.5) - 0.5));
        s.albedo = vec3(0.5, 0.5, 0.52) * (0.65 + 0.45 * fbm3(p * 2.5)) * (1.0 - 0.5 * crack);
        if (u_mode == 0) s.albedo = mix(s.albedo, vec3(0.25, 0.4, 0.15), 0.5 * top * smoothstep(0.6, 0.8, fbm3(p * 1.5)));
        s.spec = 0.1;
    } else if (m == WOOD) {
        float bark = noise3(vec3(p.x * 10.0, p.y * 1.2, p.z * 10.0));
        float rings = 0.5 + 0.5 * sin(length(fract(uv) - 0.5) * 45.0);
        s.albedo = top > 0.5 ? mix(vec3(0.6, 0.45, 0.28), vec3(0.45, 0.32, 0.18), rings)
                             : vec3(0.36, 0.24, 0.14) * (0.6 + 0.6 * bark);
    } else if (m == LEAVES) {
        float clump = fbm3(p * 4.0);
        vec3 leaf = vec3(0.17, 0.42, 0.11);
        if (u_mode == 3) {
            float h = hash13(cell);
            leaf = h < 0.33 ? vec3(0.85, 0.3, 0.05) : (h < 0.66 ? vec3(0.9, 0.6, 0.08) : vec3(0.6, 0.1, 0.05));
        }
        s.albedo = leaf * (0.55 + 0.7 * clump) * (0.6 + 0.4 * step(0.25, hash13(floor(p * 7.0))));
    } else if (m == PLANK) {
        float board = floor(fy * 4.0);
        float seam = smoothstep(0.08, 0.0, fract(fy * 4.0)) + smoothstep(0.03, 0.0, fract(uv.x + 0.5 * board) * 0.5);
        float grain = noise3(vec3(p.x * 2.0, board * 3.0, p.z * 2.0) + vec3(uv.x * 6.0, 0.0, 0.0));
        s.albedo = vec3(0.66, 0.47, 0.28) * (0.75 + 0.35 * grain + 0.15 * hash13(vec3(cell.xz, board)))
                   * (1.0 - 0.55 * clamp(seam, 0.0, 1.0));
    } else if (m == ROOF) {
        vec2 t = uv * vec2(2.0, 3.0);
        t.x += 0.5 * floor(t.y);
        float seam = max(smoothstep(0.1, 0.0, fract(t.y)), smoothstep(0.06, 0.0, fract(t.x)));
        s.albedo = vec3(0.52, 0.16, 0.1) * (0.8 + 0.3 * hash13(vec3(floor(t), cell.y))) * (1.0 - 0.5 * seam);
        s.spec = 0.15;
    } else if (m == COBBLE) {
        vec2 c = uv * 3.0;
        vec2 f = fract(c) - 0.5;
        float r = length(f);
        s.albedo = vec3(0.45, 0.45, 0.5) * (0.7 + 0.4 * hash13(vec3(floor(c), cell.y))) * (1.0 - 0.6 * smoothstep(0.35, 0.5, r));
    } else if (m == GLASS) {
        vec2 f = abs(fract(uv) - 0.5);
        float frame = step(0.4, max(f.x, f.y));
        s.albedo = mix(vec3(0.25, 0.35, 0.4), vec3(0.4, 0.27, 0.15), frame);
        s.spec = 1.0 - frame;
        s.gloss = 80.0;
        if (u_mode == 2 || u_mode == 3) s.emit = (1.0 - frame) * vec3(1.0, 0.6, 0.25) * (u_mode == 2 ? 1.6 : 0.5);
    } else if (m == GEM) {
        s.albedo = vec3(1.0, 0.75, 0.1);
        s.spec = 1.0;
        s.gloss = 60.0;
        s.emit = vec3(1.0, 0.7, 0.15) * (u_mode == 2 ? 2.5 : 0.6);
    } else if (m == PLAYER) {
        s.albedo = vec3(0.7, 0.12, 0.1);
    }
    s.albedo = srgb(s.albedo);
    return s;
}

void main() {
    int m = int(v_mat + 0.5);
    vec3 n = normalize(v_normal);
    vec3 p = v_world;
    vec3 cell = floor(p - n * 0.5);
    vec2 uv = face_uv(p, n);
    vec3 V = normalize(u_cam_pos - p);
    float sh = shadow_at(p, n);
    float ao = pow(v_ao, 1.4);
    vec3 col;

    if (m == WATER && u_mode != 1) {
        // Rippled mirror of the sky with a sun glint; deeper colour where we look straight down.
        vec2 q = p.xz * 1.7;
        float e = 0.05;
        float h0 = fbm3(vec3(q, u_time * 0.6));
        float hx = fbm3(vec3(q + vec2(e, 0.0), u_time * 0.6));
        float hz = fbm3(vec3(q + vec2(0.0, e), u_time * 0.6));
        vec3 wn = normalize(vec3(-(hx - h0) / e * 0.08, 1.0, -(hz - h0) / e * 0.08));
        vec3 R = reflect(-V, wn);
        float fres = 0.03 + 0.97 * pow(1.0 - max(dot(wn, V), 0.0), 5.0);
        vec3 deep = (u_mode == 2 ? vec3(0.0, 0.01, 0.03) : vec3(0.02, 0.11, 0.16)) * (u_ambient + 0.3 * sh);
        vec3 refl = sky_base(R) + u_sun_color * 4.0 * pow(max(dot(R, u_sun_dir), 0.0), 300.0) * sh;
        col = mix(deep, refl, fres);
        if (u_mode == 2) col += vec3(0.1, 0.3, 1.0) * 0.25 * smoothstep(0.75, 0.95, h0);
    } else {
        Surface s;
        if (m == WATER) {
            // Winter: frozen, matte, cracked ice.
            float crack = smoothstep(0.03, 0.0, abs(noise3(p * 2.2) - 0.5)) + smoothstep(0.02, 0.0, abs(noise3(p * 5.0 + 3.0) - 0.5)) * 0.6;
            s = Surface(srgb(vec3(0.72, 0.86, 0.93) * (1.0 - 0.35 * crack)), 0.4, 40.0, vec3(0.0));
        } else {
            s = material(m, p, n, cell, uv);
        }
        if (u_mode == 1 && m != WATER && m != GLASS && m != GEM && m != PLAYER) {
            // Snow settles on upward faces and on the top lip of sides; leaves keep some green showing through.
            float cover = smoothstep(0.35, 0.8, n.y);
            cover = max(cover, step(0.82, fract(p.y)) * step(abs(n.y), 0.5) * step(0.5, float(m == GRASS || m == LEAVES)));
            if (m == LEAVES) cover *= smoothstep(0.3, 0.6, fbm3(p * 3.0));
            vec3 snow = srgb(vec3(0.9, 0.93, 0.98) * (0.92 + 0.1 * noise3(p * 6.0)));
            s.albedo = mix(s.albedo * vec3(0.8, 0.85, 0.95), snow, cover);
            s.spec = mix(s.spec, 0.6, cover * step(0.985, hash13(floor(p * 28.0))));   // sparkles
            s.gloss = mix(s.gloss, 200.0, cover);
        }
        float ndl = max(dot(n, u_sun_dir), 0.0);
        vec3 sky_up = sky_base(normalize(vec3(0.0, 1.0, 0.0) + n * 0.6));
        vec3 ground_bounce = srgb(vec3(0.35, 0.3, 0.25)) * (u_mode == 1 ? 1.6 : 0.6);
        vec3 hemi = mix(ground_bounce * 0.3, sky_up, 0.5 + 0.5 * n.y) * u_ambient;
        col = s.albedo * (u_sun_color * ndl * sh + hemi * ao);
        vec3 H = normalize(V + u_sun_dir);
        col += u_sun_color * s.spec * pow(max(dot(n, H), 0.0), s.gloss) * sh * ndl;
        if (m == GLASS) col += s.spec * 0.5 * sky_base(reflect(-V, n));
        col += s.emit;
        if (u_mode == 2) {
            // Neon: every block edge glows in its material's colour, and the gems pool warm light around them.
            vec2 f = fract(uv);
            float edge = min(min(f.x, 1.0 - f.x), min(f.y, 1.0 - f.y));
            float line = smoothstep(0.06, 0.015, edge);
            col = col * 0.6 + neon_color(m) * line * 1.8 * (m == GEM || m == GLASS ? 0.0 : 1.0);
        }
    }
    // Gems light what is near them (strongly at night).
    vec3 glow = vec3(0.0);
    for (int i = 0; i < u_gem_count; i++) {
        vec3 d = u_gems[i] - p;
        float r2 = dot(d, d);
        glow += max(dot(n, normalize(d)), 0.0) / (1.0 + r2 * 1.5);
    }
    col += glow * vec3(1.0, 0.7, 0.2) * (u_mode == 2 ? 1.2 : 0.15) * (m == GEM ? 0.0 : 1.0);

    float dist = length(p - u_cam_pos);
    float fog = 1.0 - exp(-pow(dist * u_fog_density, 2.0));
    col = mix(col, sky_base(-V), fog);
    o_color = vec4(tonemap(col), 1.0);
}
