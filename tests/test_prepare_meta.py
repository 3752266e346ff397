"""prepare.meta: the official meta files in the formats seen in the wild, and bad ones."""

from pathlib import Path

import pytest

from prepare.errors import PrepareError
from prepare.meta import gender_map, read_meta

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "vox2_meta.csv"


@pytest.mark.skipif(not REFERENCE.is_file(), reason="shared/reference not present")
def test_real_vox2_meta_padded_with_bom():
    df = read_meta(REFERENCE)
    dev = df[df.set == "dev"]
    assert len(dev) == 5994  # VoxCeleb2 dev speakers
    assert set(df.gender) == {"m", "f"}
    assert df.spk_id.iloc[0] == "id00012"  # padded 'id00012 ' stripped, BOM gone
    assert (dev.gender == "m").sum() == 3682


@pytest.mark.parametrize("text", [
    "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
    "id10001\tA.J._Buckley\tm\tIreland\tdev\nid10002\tA.R._Rahman\tf\tIndia\ttest\n",
    "\ufeffVoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \nid10001 ,n1 ,m ,dev \nid10002 ,n2 ,f ,test \n",
    "ID,gender,set\nid10001,M,dev\nid10002,Female,test\n",
    "VGGFace1 ID;VoxCeleb1 ID;Gender;Set\nA;id10001;m;dev\nB;id10002;f;test\n",
    "id10001\tA\tm\tIreland\tdev\nid10002\tB\tf\tIndia\ttest\n",  # no header
    "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\r\n"
    "id10001\tA\tm\tUnited States\tdev\r\n\r\nid10002\tB\tf\tIndia\ttest\r\n",
])
def test_meta_variants(tmp_path, text):
    p = tmp_path / "meta.csv"
    p.write_text(text, encoding="utf-8")
    df = read_meta(p)
    assert list(df.spk_id) == ["id10001", "id10002"]
    assert list(df.gender) == ["m", "f"]
    assert list(df.set) == ["dev", "test"]
    assert gender_map(p) == {"id10001": "m", "id10002": "f"}


@pytest.mark.parametrize("text, expect", [
    ("", "empty"),
    ("VoxCeleb2 ID,VGGFace2 ID,Set\nid00001,n1,dev\n", "no speaker id and gender"),
    ("VoxCeleb2 ID,VGGFace2 ID,Gender,Set\nid00001,n1,x,dev\n", "line 2: gender 'x'"),
    ("VoxCeleb2 ID,VGGFace2 ID,Gender,Set\nid00001,n1,m,dev\nid00002,n2\n", "line 3"),
    ("VoxCeleb2 ID,VGGFace2 ID,Gender,Set\nbogus,n1,m,dev\n", "bad speaker id 'bogus'"),
    ("VoxCeleb2 ID,VGGFace2 ID,Gender,Set\n", "no speakers"),
    ("ID,Gender\nid00001,m\nid00001,f\n", "listed twice"),
])
def test_malformed_meta_names_file_and_problem(tmp_path, text, expect):
    p = tmp_path / "vox2_meta.csv"
    p.write_text(text)
    with pytest.raises(PrepareError) as e:
        read_meta(p)
    assert str(p) in str(e.value) and expect in str(e.value)


def test_missing_meta(tmp_path):
    with pytest.raises(PrepareError, match="meta file not found: .*nope.csv"):
        read_meta(tmp_path / "nope.csv")
