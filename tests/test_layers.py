import pytest

from vlmsafety.errors import VlmSafetyError
from vlmsafety.layers import resolve_layer


@pytest.mark.parametrize(
    ("layer", "expected"),
    [(None, 23), (0, 0), (12, 12), (24, 24), (-1, 24), (-2, 23), (-25, 0), ("null", 23)],
)
def test_resolve_layer_llava15_convention(layer, expected):
    assert resolve_layer(layer, num_layers=24, default_layer=23) == expected


@pytest.mark.parametrize("layer", [25, 40, -26, "twelve", 1.5])
def test_out_of_range_layer_names_the_valid_range(layer):
    with pytest.raises(VlmSafetyError) as e:
        resolve_layer(layer, num_layers=24, default_layer=23, model="llava15_7b")
    msg = str(e.value)
    assert "llava15_7b" in msg and "0..24" in msg and "\n" not in msg
