"""Roll-level inspection: strips of one roll as one web, defect list, four-point grade, map."""
