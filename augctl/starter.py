"""The commented starter recipe that `augctl init` writes."""

STARTER = """\
# augctl recipe. See the README, section "Recipes", for the full reference.
# Check it with:  augctl validate {name}
# Preview ops:    augctl ops            (every op, its parameters and defaults)
# Run it with:    augctl expand --recipe {name} IN OUT
version: 1

# The whole run is a pure function of the seed: same seed, same bytes.
seed: 0

# Augmented outputs per source image. Or, instead, balance the classes:
#   balance: {{target_per_class: 1000}}
variants: 5

# Also write each source (re-encoded, or copied with format: same) as variant 0.
include_originals: false

input:
  extensions: [.jpg, .jpeg, .png, .webp, .bmp, .tif, .tiff, .gif]
  max_pixels: 89478485       # larger images are refused (decompression-bomb guard)

output:
  format: jpeg               # jpeg | png | webp | same
  quality: 90                # jpeg / webp
  icc: keep                  # keep | strip the source's colour profile
  exif: strip                # strip | keep (orientation is always applied, never kept)

# Who does the bilinear resampling: pillow, or opencv (several times faster; needs
# pip install 'augctl[opencv]'). Part of the recipe: the bytes differ by rounding.
resampler: pillow

# Steps run in order. Every step takes p: the probability it is applied.
# A number is fixed or [lo, hi], drawn uniformly for each variant.
pipeline:
  - hflip: {{p: 0.5}}
  - rotate: {{degrees: [-10, 10], p: 0.5}}
  - random_resized_crop: {{size: [224, 224], scale: [0.6, 1.0]}}
  - one_of:                  # exactly one child; their p are weights
      - brightness: {{factor: [0.8, 1.2]}}
      - contrast: {{factor: [0.8, 1.2]}}
"""
