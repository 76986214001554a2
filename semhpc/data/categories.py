"""The ten SEM categories of the NFFA-Europe labelled set (docs/background.md: Data, Aversa Table 4.2).

The order is the label index used everywhere (TFRecords, logits, predictions), so never reorder
it; append new categories at the end.
"""

CATEGORIES = (
    "Biological",
    "Fibres",
    "Films_Coated_Surface",
    "MEMS_devices_electrodes",
    "Nanowires",
    "Particles",
    "Patterned_surface",
    "Porous_Sponge",
    "Powder",
    "Tips",
)

# Images per category in the labelled archive; used to mimic its imbalance in synthetic data.
ARCHIVE_COUNTS = {
    "Biological": 953,
    "Fibres": 153,
    "Films_Coated_Surface": 308,
    "MEMS_devices_electrodes": 4178,
    "Nanowires": 3692,
    "Particles": 3419,
    "Patterned_surface": 3363,
    "Porous_Sponge": 171,
    "Powder": 895,
    "Tips": 1561,
}
