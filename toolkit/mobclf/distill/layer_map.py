"""Which student layer learns from which teacher layer, declared as data (TextBrewer's "intermediate matches").

Layers are numbered as ``hidden_states``: 0 is the embedding output, 1..N the transformer layers. A map is either

- ``"uniform"`` — TinyBERT's mapping ``g(m) = m · N / M``: a 4-layer student of a 12-layer teacher learns from
  teacher layers 3, 6, 9, 12 (rounded half up when N is not a multiple of M: 2, 3, 5, 6 of 6); or
- an explicit list, one ``STUDENT:TEACHER`` pair per mapped layer, e.g. ``"1:2,2:4,3:6,4:12"``; a bare list of
  teacher layers ``"3,6,9,12"`` means student layers 1, 2, 3, … in order.

The embedding layers (0 ↔ 0) are matched by ``embedding_mse`` and are never part of the map.
"""

from __future__ import annotations

from mobclf.errors import UserError


def parse_layer_map(spec: str, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """``(student_layer, teacher_layer)`` pairs for ``spec``; a :class:`UserError` saying what is wrong otherwise."""
    spec = spec.strip()
    if spec == "uniform":
        if student_layers > teacher_layers:
            raise UserError(f"--layer-map uniform maps each of the student's {student_layers} layers to its own "
                            f"teacher layer, and the teacher has {teacher_layers}; give an explicit map such as 1:1,2:1")
        # m · N / M rounded half up: 4 of 6 layers → 2, 3, 5, 6 (distinct, since N / M >= 1)
        return [(m, (2 * m * teacher_layers + student_layers) // (2 * student_layers))
                for m in range(1, student_layers + 1)]
    pairs = []
    try:
        for position, part in enumerate(filter(None, (p.strip() for p in spec.split(","))), start=1):
            student, sep, teacher = part.partition(":")
            pairs.append((int(student), int(teacher)) if sep else (position, int(student)))
    except ValueError:
        raise UserError(f"--layer-map {spec!r}: expected 'uniform' or pairs like 1:3,2:6 (student:teacher)") from None
    if not pairs:
        raise UserError("--layer-map is empty; give 'uniform' or pairs like 1:3,2:6")
    for student, teacher in pairs:
        if not 1 <= student <= student_layers:
            raise UserError(f"--layer-map: student layer {student} is outside the student's layers 1..{student_layers}")
        if not 1 <= teacher <= teacher_layers:
            raise UserError(f"--layer-map: teacher layer {teacher} is outside the teacher's layers 1..{teacher_layers}")
    students = [student for student, _ in pairs]
    if len(set(students)) != len(students):
        raise UserError(f"--layer-map {spec!r} maps a student layer twice; each student layer learns from one teacher "
                        "layer")
    return pairs
