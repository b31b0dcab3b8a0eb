// Shared by the sky and the reference passes: hashing, value noise, the sky gradient and tone mapping.
// The uniforms below describe the active style (demo_game/styles.py).
uniform int u_mode;            // 0 summer day, 1 snowy winter, 2 neon night, 3 autumn sunset
uniform vec3 u_sun_dir;        // towards the sun
uniform vec3 u_sun_color;
uniform vec3 u_sky_zenith;
uniform vec3 u_sky_horizon;
uniform float u_exposure;
uniform float u_time;

float hash13(vec3 p) {
    p = fract(p * 0.1031);
    p += dot(p, p.zyx + 31.32);
    return fract((p.x + p.y) * p.z);
}

float noise3(vec3 p) {
    vec3 i = floor(p);
    vec3 f = fract(p);
    f = f * f * (3.0 - 2.0 * f);
    float a = mix(mix(hash13(i), hash13(i + vec3(1, 0, 0)), f.x),
                  mix(hash13(i + vec3(0, 1, 0)), hash13(i + vec3(1, 1, 0)), f.x), f.y);
    float b = mix(mix(hash13(i + vec3(0, 0, 1)), hash13(i + vec3(1, 0, 1)), f.x),
                  mix(hash13(i + vec3(0, 1, 1)), hash13(i + vec3(1, 1, 1)), f.x), f.y);
    return mix(a, b, f.z);
}

float fbm3(vec3 p) {
    float s = 0.0, a = 0.5;
    for (int i = 0; i < 4; i++) {
        s += a * noise3(p);
        p = p * 2.03 + vec3(17.1, 3.7, 9.2);
        a *= 0.5;
    }
    return s / 0.9375;
}

// Sky colour without sun disk, clouds or stars: also the colour that fog fades into, so far terrain melts into the sky.
vec3 sky_base(vec3 d) {
    float h = clamp(d.y, 0.0, 1.0);
    vec3 c = mix(u_sky_horizon, u_sky_zenith, pow(h, 0.45));
    c = mix(c, u_sky_horizon * 0.7, clamp(-d.y * 3.0, 0.0, 1.0));
    float toward_sun = max(dot(d, u_sun_dir), 0.0);
    c += u_sun_color * (u_mode == 2 ? 0.02 : 0.09) * pow(toward_sun, 6.0);
    return c;
}

vec3 tonemap(vec3 c) {
    c *= u_exposure;
    // Filmic curve (a fit of ACES) keeps highlights from clipping to flat white.
    c = clamp((c * (2.51 * c + 0.03)) / (c * (2.43 * c + 0.59) + 0.14), 0.0, 1.0);
    return pow(c, vec3(1.0 / 2.2));
}

vec3 srgb(vec3 c) { return pow(c, vec3(2.2)); }

// Face-aligned texture coordinates in world units: their fraction is the position within the block's face. The
// reference textures are laid out by them, and the fast pass hands their fraction over as a G-buffer.
vec2 face_uv(vec3 p, vec3 n) {
    vec3 a = abs(n);
    return a.y > 0.5 ? p.xz : (a.x > 0.5 ? p.zy : p.xy);
}

// The sun's shadow map (drawn once per style), read by the reference pass and the sun G-buffer.
uniform sampler2DShadow u_shadow;
uniform mat4 u_light_viewproj;
uniform float u_shadow_texel;

float shadow_at(vec3 p, vec3 n) {
    vec4 lp = u_light_viewproj * vec4(p + n * 0.04, 1.0);
    vec3 s = lp.xyz / lp.w * 0.5 + 0.5;
    if (any(lessThan(s.xy, vec2(0.0))) || any(greaterThan(s.xy, vec2(1.0)))) return 1.0;
    float sum = 0.0;
    // Four bilinear PCF taps: soft edges without shimmering.
    for (int i = 0; i < 4; i++) {
        vec2 o = vec2((i & 1) * 2 - 1, (i >> 1) * 2 - 1) * 0.75 * u_shadow_texel;
        sum += texture(u_shadow, vec3(s.xy + o, s.z - 0.0015));
    }
    return sum * 0.25;
}
