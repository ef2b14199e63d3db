"""MM-SafetyBench (Liu et al. 2024; isXinLiu/MM-SafetyBench `data/`): 13 scenarios, 3 image variants.

`attack.path` is the folder holding `processed_questions/` (one JSON per scenario, e.g.
`01-Illegal_Activitiy.json`: {"<id>": {"Question", "Changed Question", "Key Phrase", "Phrase Type",
"Rephrased Question", "Rephrased Question(SD)"}}) and `imgs/<scenario>/{SD,SD_TYPO,TYPO}/<id>.jpg`.
Each variant is sent with the prompt text MM-SafetyBench pairs with it: SD with "Rephrased
Question(SD)", SD_TYPO and TYPO with "Rephrased Question"; `text` sends the plain "Question" alone.
The behavior judged is always "Question". `attack.render_typo: true` draws TYPO images from "Key
Phrase" with MM-SafetyBench's own recipe (`typo.py`) instead of reading the shipped files.
"""

from __future__ import annotations

from omegaconf import DictConfig

from vlmsafety.attacks.base import AttackItem, AttackSet, ImageSpec, register_attack
from vlmsafety.attacks.rows import BadRow, Row, check_image, collect, has_undecodable, read_json_entries
from vlmsafety.attacks.sources import attack_name, configured_path
from vlmsafety.errors import VlmSafetyError

UPSTREAM = "https://github.com/isXinLiu/MM-SafetyBench"
PROMPT_FIELD = {"SD": "Rephrased Question(SD)", "SD_TYPO": "Rephrased Question", "TYPO": "Rephrased Question", "text": "Question"}
OPTIONAL = ("Changed Question", "Key Phrase", "Phrase Type", "Rephrased Question", "Rephrased Question(SD)")


def scenario_category(stem: str) -> str:
    """"01-Illegal_Activitiy" -> "Illegal_Activitiy" (upstream spelling kept)."""
    number, _, name = stem.partition("-")
    return name if number.isdigit() and name else stem


@register_attack("mmsafetybench")
def load_mmsafetybench(attack: DictConfig) -> AttackSet:
    """Items `mmsb-<scenario>-<id>-<variant>` for `attack.variant` (SD | SD_TYPO | TYPO | text)."""
    name = attack_name(attack)
    variant = str(attack.get("variant", "SD_TYPO"))
    if variant not in PROMPT_FIELD:
        raise VlmSafetyError(f"attack {name!r}: variant={variant!r} is not valid; use one of: {', '.join(PROMPT_FIELD)}")
    render_typo = bool(attack.get("render_typo", False))
    root = configured_path(attack)
    questions = root / str(attack.get("questions_dir", "processed_questions")) if root else None
    if questions is None or not questions.is_dir():
        raise VlmSafetyError(
            f"attack {name!r}: no folder {questions or 'processed_questions/'} (attack.path); download MM-SafetyBench's "
            f"data/ from {UPSTREAM} (questions and imgs) and set attack.path to it"
        )
    files = sorted(questions.glob("*.json"))
    if not files:
        raise VlmSafetyError(f"attack {name!r}: {questions} holds no scenario JSON files (e.g. 01-Illegal_Activitiy.json)")
    images = root / str(attack.get("image_dir", "imgs"))
    required = ["Question", PROMPT_FIELD[variant]] + (["Key Phrase"] if render_typo and variant == "TYPO" else [])
    typo_params = {"font": str(attack.typo_font)} if attack.get("typo_font") else {}

    sets = []
    for file in files:
        scenario = file.stem

        def build(row: Row, scenario: str = scenario) -> AttackItem:
            key = row.key
            if has_undecodable(key) or not key.strip() or "/" in key or "\\" in key:
                raise BadRow("the entry key is not a usable id (empty, a path or not UTF-8)")
            image = None
            if variant == "TYPO" and render_typo:
                image = ImageSpec("typo", {"text": row.text("Key Phrase"), **typo_params})
            elif variant != "text":
                path = images / scenario / variant / f"{key}.jpg"
                check_image(path)
                image = ImageSpec("file", {"path": str(path)})
            return AttackItem(
                id=f"mmsb-{scenario}-{key}-{variant}", source="mmsafetybench", category=scenario_category(scenario),
                harmful=True, text=row.text(PROMPT_FIELD[variant]), image=image, behavior=row.text("Question"),
                meta={"key_phrase": row.text("Key Phrase", required=False), "phrase_type": row.text("Phrase Type", required=False)},
            )

        sets.append(collect(attack, read_json_entries(file, required, OPTIONAL), build, str(file)))
    return AttackSet([it for s in sets for it in s.items], sum(s.skipped for s in sets), f"{questions} ({len(files)} scenarios)")
