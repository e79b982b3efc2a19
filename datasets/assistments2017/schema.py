"""Column schema of the ASSISTments 2017 Data Mining Competition release (dkt_spec §5.3, §5.4, §6.3)."""
from __future__ import annotations

# The 77 student-log columns, as pandas lists them after concatenating the student_log_*.csv files.
LOG_COLUMNS: tuple[str, ...] = (
    "AveCarelessness", "AveCorrect", "AveKnow", "AveResBored", "AveResConf", "AveResEngcon", "AveResFrust",
    "AveResGaming", "AveResOfftask", "ITEST_id", "Ln", "Ln-1", "NumActions", "Prev5count", "RES_BORED",
    "RES_CONCENTRATING", "RES_CONFUSED", "RES_FRUSTRATED", "RES_GAMING", "RES_OFFTASK", "SY ASSISTments Usage",
    "actionId", "assignmentId", "assistmentId", "attemptCount", "bottomHint", "confidence(BORED)",
    "confidence(CONCENTRATING)", "confidence(CONFUSED)", "confidence(FRUSTRATED)", "confidence(GAMING)",
    "confidence(OFF TASK)", "consecutiveErrorsInRow", "correct", "endTime", "endsWithAutoScaffolding",
    "endsWithScaffolding", "frIsHelpRequest", "frIsHelpRequestScaffolding", "frPast5HelpRequest",
    "frPast5WrongCount", "frPast8HelpRequest", "frPast8WrongCount", "frTimeTakenOnScaffolding",
    "frTotalSkillOpportunitiesScaffolding", "frWorkingInSchool", "helpAccessUnder2Sec", "hint", "hintCount",
    "hintTotal", "manywrong", "original", "past8BottomOut", "prev5count", "problemId", "problemType",
    "responseIsChosen", "responseIsFillIn", "scaffold", "skill", "startTime", "stlHintUsed", "sumRight",
    "sumTime3SDWhen3RowRight", "sumTimePerSkill", "timeGreater10SecAndNextActionRight",
    "timeGreater5Secprev2wrong", "timeOver80", "timeSinceSkill", "timeTaken", "totalFrAttempted",
    "totalFrPastWrongCount", "totalFrPercentPastWrong", "totalFrSkillOpportunities",
    "totalFrSkillOpportunitiesByScaffolding", "totalFrTimeOnSkill", "totalTimeByPercentCorrectForskill",
)
assert len(LOG_COLUMNS) == 77

# The 10 student-profile (SP) features of the STEM paper, in this order (dkt_spec §6.3).
SP_COLUMNS: tuple[str, ...] = (
    "AveKnow", "AveCarelessness", "AveCorrect", "NumActions", "AveResBored", "AveResEngcon", "AveResConf",
    "AveResFrust", "AveResOfftask", "AveResGaming",
)

TRAINING_LABEL_COLUMNS: tuple[str, ...] = ("ITEST_id", "SchoolId", "AveCorrect", "MCAS", "isSTEM")
VALIDATION_LABEL_COLUMNS: tuple[str, ...] = ("ITEST_id", "SchoolId", "AveCorrect", "MCAS")

LOG_FILE_GLOB = "student_log_*.csv"
FULL_RELEASE_FILE = "anonymized_full_release_competition_dataset.csv"
TRAINING_LABEL_FILE = "training_label.csv"
VALIDATION_LABEL_FILE = "validation_test_label.csv"
NO_SKILL = "noskill"
MISSING_MCAS = -999
