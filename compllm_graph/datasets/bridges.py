"""Bridges for MultiExpertQA-All: a later part, from another domain, uses an earlier answer.

Each bridge turns the gold answer of the part before it into the next part's gold answer by a
fixed fact table, so the composed question's gold follows from its parts' gold:

- `element_part`: chemistry, "which element has atomic number n?" for a numeric answer n
  (1 to 118), as multiple choice among elements with nearby atomic numbers.
- `body_element_part`: biology, "is that element one of the six that make up about 99 % of
  the human body's mass (O, C, H, N, Ca, P)?", yes or no.

Referring to the earlier answer as `#k` is how the decomposer writes dependencies too.
"""

from __future__ import annotations

import random
from typing import Any

ELEMENTS = tuple(
    (  # noqa: SIM905 (a word list reads better than 118 quoted names)
        "Hydrogen Helium Lithium Beryllium Boron Carbon Nitrogen Oxygen Fluorine Neon Sodium "
        "Magnesium Aluminium Silicon Phosphorus Sulfur Chlorine Argon Potassium Calcium Scandium "
        "Titanium Vanadium Chromium Manganese Iron Cobalt Nickel Copper Zinc Gallium Germanium "
        "Arsenic Selenium Bromine Krypton Rubidium Strontium Yttrium Zirconium Niobium Molybdenum "
        "Technetium Ruthenium Rhodium Palladium Silver Cadmium Indium Tin Antimony Tellurium "
        "Iodine Xenon Caesium Barium Lanthanum Cerium Praseodymium Neodymium Promethium Samarium "
        "Europium Gadolinium Terbium Dysprosium Holmium Erbium Thulium Ytterbium Lutetium Hafnium "
        "Tantalum Tungsten Rhenium Osmium Iridium Platinum Gold Mercury Thallium Lead Bismuth "
        "Polonium Astatine Radon Francium Radium Actinium Thorium Protactinium Uranium Neptunium "
        "Plutonium Americium Curium Berkelium Californium Einsteinium Fermium Mendelevium Nobelium "
        "Lawrencium Rutherfordium Dubnium Seaborgium Bohrium Hassium Meitnerium Darmstadtium "
        "Roentgenium Copernicium Nihonium Flerovium Moscovium Livermorium Tennessine Oganesson "
    ).split()
)
"""Element names by atomic number (index 0 is hydrogen, number 1)."""

BODY_ELEMENTS = frozenset({"Oxygen", "Carbon", "Hydrogen", "Nitrogen", "Calcium", "Phosphorus"})
"""The six elements that make up about 99 % of the human body's mass."""


def atomic_number(answer: str) -> int | None:
    """The gold answer as an atomic number (1 to 118), or None when it cannot be one."""
    try:
        value = float(answer)
    except ValueError:
        return None
    number = int(value)
    return number if value == number and 1 <= number <= len(ELEMENTS) else None


def element_part(number: int, ref: int, rng: random.Random) -> dict[str, Any]:
    """The chemistry part: the element with atomic number `#ref`, among 4 nearby elements."""
    if not 1 <= number <= len(ELEMENTS):
        raise ValueError(f"no element has atomic number {number}")
    near = [n for n in range(number - 4, number + 5) if n != number and 1 <= n <= len(ELEMENTS)]
    options = [number, *rng.sample(near, 3)]
    rng.shuffle(options)
    choices = [ELEMENTS[n - 1] for n in options]
    return {
        "question": f"Which chemical element has the atomic number #{ref}?",
        "answer": ELEMENTS[number - 1],
        "choices": choices,
        "domain": "chemistry",
    }


def body_element_part(element: str, ref: int) -> dict[str, Any]:
    """The biology part: whether element `#ref` is one of the six main elements of the body."""
    if element not in ELEMENTS:
        raise ValueError(f"{element!r} is not an element name")
    return {
        "question": (
            f"Is #{ref} one of the six elements that make up about 99% of the mass of the "
            "human body? Answer yes or no."
        ),
        "answer": "yes" if element in BODY_ELEMENTS else "no",
        "choices": None,
        "domain": "biology",
    }


__all__ = [
    "BODY_ELEMENTS",
    "ELEMENTS",
    "atomic_number",
    "body_element_part",
    "element_part",
]
