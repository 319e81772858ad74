"""Drawing synthetic radiographs: a long bone in soft tissue, lesions, film noise.

:func:`render_radiograph` draws one ``uint8`` image from a generator and returns the
outline of every lesion it filled (the LabelMe polygons of :mod:`.writing`). Benign
lesions are small, round/oval, well defined, lucent with a thin sclerotic rim or
sclerotic; malignant ones are larger, irregular, ill defined, mixed lucent/sclerotic, with
a periosteal reaction (sunburst spicules and/or a Codman triangle).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["render_radiograph"]

# Benign subtypes drawn as sclerotic (bony) lesions; the others are drawn lucent.
_SCLEROTIC_SUBTYPES = ("osteochondroma", "multiple osteochondromas", "synovial osteochondroma")


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class _BoneFrame:
    """Axis-aligned coordinates of one long bone: ``u`` along the shaft, ``v`` across.

    The shaft has half-width ``shaft_half_width``; it flares toward its end at
    ``u = end_u`` (metaphysis) and closes with an elliptical cap (epiphysis).
    """

    def __init__(self, center_xy, angle, shaft_half_width, end_u, flare):
        self.cx, self.cy = center_xy
        self.dx, self.dy = float(np.cos(angle)), float(np.sin(angle))
        self.shaft_half_width = shaft_half_width
        self.end_half_width = shaft_half_width * (1.0 + flare)
        self.end_u = end_u
        self.flare_length = 2.5 * shaft_half_width

    def to_uv(self, x, y):
        x = x - self.cx
        y = y - self.cy
        return x * self.dx + y * self.dy, -x * self.dy + y * self.dx

    def to_xy(self, u, v):
        return self.cx + u * self.dx - v * self.dy, self.cy + u * self.dy + v * self.dx

    def flare_fraction(self, u):
        """0 along the shaft, rising smoothly to 1 where the end cap starts."""
        cap_start = self.end_u - self.end_half_width
        return _smoothstep(cap_start - self.flare_length, cap_start, u)

    def half_width(self, u):
        span = self.end_half_width - self.shaft_half_width
        return self.shaft_half_width + span * self.flare_fraction(u)

    def radius(self, u, v):
        """Normalised distance from the axis: < 1 inside the bone, 1 on its surface."""
        beyond_cap = np.maximum(u - (self.end_u - self.end_half_width), 0.0)
        return np.sqrt((v / self.half_width(u)) ** 2 + (beyond_cap / self.end_half_width) ** 2)


def _bone_intensity(frame, u, v, marrow, cortex, cortex_fraction, texture):
    """Additive intensity of one bone: bright cortex shell, darker textured marrow."""
    radius = frame.radius(u, v)
    # The cortex thins toward the end of the bone, as at a real metaphysis.
    cortex_width = cortex_fraction * (1.0 - 0.6 * frame.flare_fraction(u))
    in_cortex = _smoothstep(1.0 - cortex_width - 0.04, 1.0 - cortex_width + 0.04, radius)
    in_bone = 1.0 - _smoothstep(0.97, 1.03, radius)
    return in_bone * (marrow + texture + (cortex - marrow) * in_cortex)


def _low_frequency_noise(rng, height, width, cell_px) -> np.ndarray:
    """Zero-mean, unit-ish noise with blobs about ``cell_px`` wide (cheap: upsampled)."""
    grid_h = max(2, int(round(height / cell_px)) + 1)
    grid_w = max(2, int(round(width / cell_px)) + 1)
    coarse = rng.standard_normal((grid_h, grid_w), dtype=np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _fill_mask(shape, polygon_xy, blur_sigma: float) -> np.ndarray:
    """Anti-aliased float mask (0-1) of a polygon, optionally with a blurred border."""
    mask = np.zeros(shape, np.uint8)
    points = np.round(np.asarray(polygon_xy) * 16.0).astype(np.int32)
    cv2.fillPoly(mask, [points], 255, lineType=cv2.LINE_AA, shift=4)
    mask = mask.astype(np.float32) / 255.0
    if blur_sigma > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), blur_sigma)
    return mask


def _lesion_outline(rng, frame, center_uv, radius, kind, n_points) -> np.ndarray:
    """Closed lesion outline in image (x, y) coordinates, rounded to 1/100 px."""
    angles = np.linspace(0.0, 2.0 * np.pi, n_points, endpoint=False)
    if kind == "malignant":
        # Irregular: a few random low harmonics on the radius.
        radial = np.ones_like(angles)
        for harmonic in range(2, 6):
            amplitude = rng.uniform(0.0, 0.45 / harmonic)
            radial += amplitude * np.cos(harmonic * angles + rng.uniform(0, 2 * np.pi))
        radial = np.maximum(radial, 0.45)
        elongation = rng.uniform(1.1, 1.7)
    else:
        # Smooth oval with a slight, smooth wobble.
        radial = 1.0 + 0.03 * np.cos(3 * angles + rng.uniform(0, 2 * np.pi))
        elongation = rng.uniform(1.0, 1.5)
    tilt = rng.uniform(-0.35, 0.35)
    along = elongation * radius * radial * np.cos(angles)
    across = radius * radial * np.sin(angles)
    u = center_uv[0] + along * np.cos(tilt) - across * np.sin(tilt)
    v = center_uv[1] + along * np.sin(tilt) + across * np.cos(tilt)
    x, y = frame.to_xy(u, v)
    return np.round(np.stack([x, y], axis=1), 2)


def _place_lesions(rng, frame, height, width, kind, subtype, n_lesions, visible_u):
    """Sample up to ``n_lesions`` non-overlapping lesion outlines inside the image.

    The first lesion is always placed; further ones are dropped only if a tiny image has no
    room for them. Returns a list of ``(outline_xy, center_uv, radius, style)`` with
    ``style`` one of "lucent", "sclerotic", "malignant".
    """
    margin = 2.0
    low_u, high_u = visible_u
    lesions: list[tuple] = []
    for _ in range(n_lesions):
        fallback = None
        for attempt in range(60):
            shrink = 0.985**attempt  # big lesions that keep failing are shrunk
            # Prefer the metaphysis, but search the whole shaft once that keeps failing.
            near_end = frame.end_u < high_u and attempt < 20 and rng.random() < 0.75
            last_u = min(high_u, frame.end_u - 0.7 * frame.end_half_width)
            if near_end:
                start = frame.end_u - frame.end_half_width - frame.flare_length
                first_u = min(max(low_u, start), last_u)
            else:
                first_u = min(low_u, last_u)
            u_c = rng.uniform(first_u, last_u)
            half_width = float(frame.half_width(u_c))
            if kind == "malignant":
                style = "malignant"
                radius = shrink * half_width * rng.uniform(0.85, 1.35)
                v_c = rng.uniform(-0.5, 0.5) * half_width
            elif subtype in _SCLEROTIC_SUBTYPES or (subtype is None and rng.random() < 0.4):
                style = "sclerotic"
                radius = shrink * half_width * rng.uniform(0.4, 0.75)
                if subtype == "synovial osteochondroma" or rng.random() < 0.3:
                    v_c = rng.uniform(-0.5, 0.5) * half_width  # within the bone
                else:  # exostosis at the cortex, bulging out of the bone
                    v_c = rng.choice((-1.0, 1.0)) * (half_width - rng.uniform(0.0, 0.4) * radius)
            else:
                style = "lucent"
                radius = shrink * half_width * rng.uniform(0.4, 0.7)
                room = max(half_width * 0.85 - 1.3 * radius, 0.0)  # stay inside the cortex
                v_c = rng.uniform(-room, room)
            radius = max(radius, 3.0)
            outline = _lesion_outline(
                rng, frame, (u_c, v_c), radius, kind, 48 if style == "malignant" else 32
            )
            inside = (
                outline[:, 0].min() >= margin and outline[:, 1].min() >= margin
                and outline[:, 0].max() <= width - 1 - margin
                and outline[:, 1].max() <= height - 1 - margin
            )
            apart = all(
                np.hypot(u_c - other[1][0], v_c - other[1][1]) > 1.75 * (radius + other[2]) + 4
                for other in lesions
            )
            candidate = (outline, (u_c, v_c), radius, style)
            if inside and apart:
                lesions.append(candidate)
                break
            if apart or (fallback is None and not lesions):
                fallback = candidate
        else:
            # Nothing fits (tiny image): clip an outline that does not touch the others to
            # the image (the clipped outline is what gets drawn), or drop this lesion.
            if fallback is not None:
                outline = fallback[0]
                outline[:, 0] = np.clip(outline[:, 0], 0.0, width - 1.0)
                outline[:, 1] = np.clip(outline[:, 1], 0.0, height - 1.0)
                lesions.append(fallback)
    return lesions


def _draw_periosteal_reaction(rng, frame, layer, outline, center_uv, radius, line_px):
    """Bright sunburst spicules and/or a Codman triangle outside the cortex."""
    style = rng.choice(("sunburst", "codman", "both"), p=(0.5, 0.3, 0.2))
    brightness = rng.uniform(45.0, 75.0)
    u_c, v_c = center_uv
    if style in ("sunburst", "both"):
        outline_u, outline_v = frame.to_uv(outline[:, 0], outline[:, 1])
        half_width = frame.half_width(outline_u)
        for index in np.flatnonzero(np.abs(outline_v) > 0.75 * half_width):
            if rng.random() < 0.35:
                continue
            du, dv = outline_u[index] - u_c, outline_v[index] - v_c
            norm = np.hypot(du, dv) + 1e-6
            length = radius * rng.uniform(0.3, 0.8)
            start = frame.to_xy(outline_u[index] - 0.1 * du, outline_v[index] - 0.1 * dv)
            stop = frame.to_xy(
                outline_u[index] + length * du / norm, outline_v[index] + length * dv / norm
            )
            cv2.line(
                layer, (int(round(start[0])), int(round(start[1]))),
                (int(round(stop[0])), int(round(stop[1]))),
                int(round(brightness * rng.uniform(0.7, 1.0))), line_px, cv2.LINE_AA,
            )
    if style in ("codman", "both"):
        outline_u, _ = frame.to_uv(outline[:, 0], outline[:, 1])
        side = 1.0 if rng.random() < 0.5 else -1.0
        # The periosteum lifts where the tumor meets normal cortex, on the shaft side.
        u0 = float(outline_u.min())
        half_width = float(frame.half_width(u0))
        length = radius * rng.uniform(0.5, 0.9)
        lift = radius * rng.uniform(0.15, 0.3)
        corners_uv = [
            (u0 + 0.1 * length, side * half_width),
            (u0 - length, side * half_width),
            (u0 + 0.1 * length, side * (half_width + lift)),
        ]
        corners = np.array([frame.to_xy(u, v) for u, v in corners_uv])
        cv2.fillPoly(
            layer, [np.round(corners * 16).astype(np.int32)], int(round(brightness)), cv2.LINE_AA, 4
        )


def render_radiograph(
    rng: np.random.Generator,
    height: int,
    width: int,
    lesion: str | None = None,
    subtype: str | None = None,
    n_lesions: int = 1,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw one radiograph-like image of a long bone, optionally with lesions.

    Args:
        rng: Generator that supplies all randomness (the image is a pure function of it).
        height, width: Image size in pixels.
        lesion: None or "normal" (no lesion), "benign" or "malignant".
        subtype: Optional BTXRD subtype; benign osteochondromas are drawn sclerotic, other
            benign subtypes lucent with a sclerotic rim. Without it the style is random.
        n_lesions: Number of lesions (e.g. 2-3 for "multiple osteochondromas"); they do
            not overlap. On a tiny image, lesions after the first may be dropped for lack
            of room.

    Returns:
        ``(image, outlines)``: a ``uint8`` ``(height, width)`` array, and one float
        ``(k, 2)`` array of (x, y) polygon vertices per lesion, exactly as filled.
    """
    if lesion not in (None, "normal", "benign", "malignant"):
        raise ValueError(f"lesion must be None, 'normal', 'benign' or 'malignant', got {lesion!r}")
    shape = (height, width)
    short_side, long_side = min(shape), max(shape)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    # Bone along the long image axis, tilted, off-centre; its end is usually in view.
    base_angle = 0.0 if width >= height else np.pi / 2
    angle = base_angle + rng.uniform(-0.4, 0.4) + (np.pi if rng.random() < 0.5 else 0.0)
    center = (width * rng.uniform(0.4, 0.6), height * rng.uniform(0.4, 0.6))
    shaft_half_width = short_side * rng.uniform(0.07, 0.12)
    end_visible = rng.random() < 0.8
    end_u = long_side * rng.uniform(0.18, 0.38) if end_visible else 10.0 * long_side
    frame = _BoneFrame(center, angle, shaft_half_width, end_u, flare=rng.uniform(0.3, 0.8))
    u, v = frame.to_uv(xx, yy)
    corner_u, _ = frame.to_uv(np.array([0, width, 0, width]), np.array([0, 0, height, height]))
    visible_u = (float(corner_u.min()) + shaft_half_width, float(corner_u.max()))

    # Background: dark, with a gentle exposure gradient.
    gradient_angle = rng.uniform(0.0, 2.0 * np.pi)
    image = rng.uniform(8.0, 30.0) + rng.uniform(0.0, 15.0) * (
        np.cos(gradient_angle) * xx / width + np.sin(gradient_angle) * yy / height
    )
    # Soft tissue: a smooth, wobbly envelope around the bone.
    tissue_half_width = frame.end_half_width * rng.uniform(1.8, 2.8)
    wobble = tissue_half_width * 0.12 * _low_frequency_noise(rng, height, width, long_side / 3)
    tissue_end = end_u + frame.end_half_width * rng.uniform(0.8, 1.6)
    beyond = np.maximum(u - tissue_end + tissue_half_width, 0.0)
    tissue_radius = np.sqrt(v**2 + beyond**2) + wobble
    image = image + rng.uniform(35.0, 60.0) * (
        1.0 - _smoothstep(0.8 * tissue_half_width, 1.2 * tissue_half_width, tissue_radius)
    )
    # Main bone: bright cortex, textured (trabecular) marrow.
    marrow = rng.uniform(55.0, 85.0)
    texture = rng.uniform(5.0, 10.0) * _low_frequency_noise(
        rng, height, width, max(2.0, short_side / 60)
    )
    image += _bone_intensity(
        frame, u, v, marrow, rng.uniform(110.0, 150.0), rng.uniform(0.18, 0.32), texture
    )
    # Sometimes a thinner parallel bone (fibula / ulna), additive like X-ray attenuation.
    if rng.random() < 0.4:
        offset = rng.choice((-1.0, 1.0)) * frame.end_half_width * rng.uniform(1.4, 1.9)
        partner = _BoneFrame(
            frame.to_xy(0.0, offset), angle + rng.uniform(-0.06, 0.06),
            shaft_half_width * rng.uniform(0.35, 0.55), end_u * rng.uniform(0.7, 1.0),
            flare=rng.uniform(0.2, 0.5),
        )
        pu, pv = partner.to_uv(xx, yy)
        image += _bone_intensity(
            partner, pu, pv, marrow * 0.8, rng.uniform(90.0, 130.0), 0.35, texture * 0.5
        )
    # Side marker ("L"/"R") burnt into a corner, as on many films.
    if rng.random() < 0.5:
        scale = short_side / 300.0
        corner = (int(width * rng.choice((0.04, 0.86))), int(height * rng.choice((0.1, 0.96))))
        marker = np.zeros(shape, np.uint8)  # OpenCV draws text on 8-bit images only
        cv2.putText(
            marker, "L" if rng.random() < 0.5 else "R", corner, cv2.FONT_HERSHEY_SIMPLEX,
            scale, 255, max(1, int(round(2 * scale))), cv2.LINE_AA,
        )
        alpha = marker.astype(np.float32) / 255.0
        image = image * (1.0 - alpha) + rng.uniform(180.0, 230.0) * alpha

    outlines: list[np.ndarray] = []
    if lesion in ("benign", "malignant"):
        periosteal_layer = np.zeros(shape, np.uint8)  # OpenCV anti-aliases 8-bit only
        line_px = max(1, int(round(short_side / 300)))
        lesions = _place_lesions(
            rng, frame, height, width, lesion, subtype, n_lesions, visible_u
        )
        for outline, center_uv, radius, style in lesions:
            outlines.append(outline)
            if style == "lucent":
                # Well-defined lytic hole with a thin sclerotic rim.
                mask = _fill_mask(shape, outline, rng.uniform(0.6, 1.2))
                rim_px = max(1, int(round(radius * rng.uniform(0.08, 0.16))))
                hard = (_fill_mask(shape, outline, 0.0) > 0.5).astype(np.uint8)
                kernel = np.ones((2 * rim_px + 1, 2 * rim_px + 1), np.uint8)
                rim = cv2.dilate(hard, kernel).astype(np.float32) - hard
                rim = cv2.GaussianBlur(rim, (0, 0), 0.8)
                image += rng.uniform(30.0, 55.0) * rim - rng.uniform(45.0, 70.0) * mask
            elif style == "sclerotic":
                mask = _fill_mask(shape, outline, rng.uniform(0.6, 1.2))
                image += mask * (rng.uniform(45.0, 75.0) + 0.5 * texture)
            else:
                # Ill-defined, mixed lytic/sclerotic, replacing bone (cortex destruction).
                mask = _fill_mask(shape, outline, radius * rng.uniform(0.08, 0.16))
                mixed = np.tanh(2.0 * _low_frequency_noise(rng, height, width, radius / 2.5))
                # Net lytic or sclerotic against what surrounds it, so it reads as a lesion.
                hard = (_fill_mask(shape, outline, 0.0) > 0.5).astype(np.uint8)
                ring_px = max(3, int(round(0.6 * radius)))
                ring = cv2.dilate(hard, np.ones((ring_px, ring_px), np.uint8)) > hard
                surround = float(image[ring].mean()) if ring.any() else marrow
                shift = rng.choice((-1.0, 1.0), p=(0.45, 0.55)) * rng.uniform(35.0, 55.0)
                content = surround + shift + rng.uniform(20.0, 35.0) * mixed
                image = image * (1.0 - mask) + content * mask
                _draw_periosteal_reaction(
                    rng, frame, periosteal_layer, outline, center_uv, radius, line_px
                )
        image += cv2.GaussianBlur(periosteal_layer.astype(np.float32), (0, 0), 0.7)

    # Film: slight blur, grain, and a random tone curve.
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), rng.uniform(0.5, 1.1))
    image += rng.uniform(2.0, 6.0) * rng.standard_normal(shape, dtype=np.float32)
    image = np.clip(image, 0.0, 255.0) / 255.0
    image = 255.0 * image ** rng.uniform(0.8, 1.2)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), outlines
