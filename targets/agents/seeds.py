"""ADAS's seed archive (Hu et al. 2024, Meta Agent Search), as code strings with their knobs exposed so
that the offline proposer can vary them: Chain-of-Thought, CoT-SC, Self-Refine, LLM Debate, Step-back
Abstraction, Quality-Diversity and Role Assignment. Code and instructions follow ADAS's mgsm_prompt.py."""

from __future__ import annotations

from targets.base import SeedCandidate

COT = "Please think step by step and then solve the task."
REFLECT = (
    "Given previous attempts and feedback, carefully consider where you could go wrong in your latest "
    "attempt. Using insights from previous attempts, try to solve the task better."
)
CRITIC = (
    "Please review the answer above and criticize on where might be wrong. If you are absolutely sure it "
    "is correct, output 'True' in 'correct'."
)
DEBATE = (
    "Given solutions to the problem from other agents, consider their opinions as additional advice. "
    "Please think carefully and provide an updated answer."
)
DEBATE_FINAL = (
    "Given all the above thinking and answers, reason over them carefully and provide a final answer."
)
PRINCIPLE = (
    "What are the principles and concepts involved in solving this task? First think step by step. Then "
    "list all involved principles and explain them."
)
PRINCIPLE_COT = (
    "Given the question and the involved principle behind the question, think step by step and then solve "
    "the task."
)
QD = "Given previous attempts, try to come up with another interesting way to solve the task."
QD_FINAL = "Given all the above solutions, reason over them carefully and provide a final answer."
ROLES: dict[str, list[str]] = {
    "mgsm": ["Math Professor", "Grade School Teacher", "Math Enthusiast"],
    "drop": ["Reading Comprehension Specialist", "Logical Reasoning Strategist", "Careful Fact Checker"],
    "mmlu": ["Biology Expert", "Physics Expert", "Chemistry Expert", "Science Generalist"],
    "gpqa": ["Biology Expert", "Physics Expert", "Chemistry Expert", "Science Generalist"],
    "arc": ["Pattern Recognition Expert", "Geometry Expert", "Puzzle Enthusiast"],
}


def cot(temperature: float = 0.5) -> str:
    return f'''def forward(self, taskInfo):
    # Chain-of-Thought: let the model think step by step before it answers.
    cot_instruction = "{COT}"
    cot_agent = LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent", temperature={temperature})
    thinking, answer = cot_agent([taskInfo], cot_instruction)
    return answer
'''


def cot_sc(n: int = 5, temperature: float = 0.8) -> str:
    return f'''def forward(self, taskInfo):
    # Self-Consistency: sample several chains of thought at a high temperature, return the majority answer.
    from collections import Counter

    cot_instruction = "{COT}"
    N = {n}
    cot_agents = [
        LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent", temperature={temperature})
        for _ in range(N)
    ]
    possible_answers = []
    for i in range(N):
        thinking, answer = cot_agents[i]([taskInfo], cot_instruction)
        possible_answers.append(str(answer.content))
    return Counter(possible_answers).most_common(1)[0][0]
'''


def self_refine(max_rounds: int = 5) -> str:
    return f'''def forward(self, taskInfo):
    # Self-Refine (Reflexion): a critic reviews the answer, the solver revises it until judged correct.
    cot_initial_instruction = "{COT}"
    cot_reflect_instruction = {REFLECT!r}
    cot_agent = LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent")
    critic_instruction = {CRITIC!r}
    critic_agent = LLMAgentBase(["feedback", "correct"], "Critic Agent")
    N_max = {max_rounds}
    cot_inputs = [taskInfo]
    thinking, answer = cot_agent(cot_inputs, cot_initial_instruction, 0)
    for i in range(N_max):
        feedback, correct = critic_agent([taskInfo, thinking, answer], critic_instruction, i)
        if str(correct.content).strip() == "True":
            break
        cot_inputs.extend([thinking, answer, feedback])
        thinking, answer = cot_agent(cot_inputs, cot_reflect_instruction, i + 1)
    return answer
'''


def debate(
    roles: list[str], rounds: int = 2, temperature: float = 0.8, final_temperature: float = 0.1
) -> str:
    return f'''def forward(self, taskInfo):
    # LLM Debate: agents with different roles answer, read each other's reasoning and update;
    # a final agent decides.
    debate_initial_instruction = "{COT}"
    debate_instruction = {DEBATE!r}
    debate_agents = [
        LLMAgentBase(["thinking", "answer"], "Debate Agent", temperature={temperature}, role=role)
        for role in {roles!r}
    ]
    final_decision_instruction = {DEBATE_FINAL!r}
    final_decision_agent = LLMAgentBase(
        ["thinking", "answer"], "Final Decision Agent", temperature={final_temperature}
    )
    max_round = {rounds}
    all_thinking = [[] for _ in range(max_round)]
    all_answer = [[] for _ in range(max_round)]
    for r in range(max_round):
        for i in range(len(debate_agents)):
            if r == 0:
                thinking, answer = debate_agents[i]([taskInfo], debate_initial_instruction)
            else:
                others = all_thinking[r - 1][:i] + all_thinking[r - 1][i + 1:]
                input_infos = [taskInfo] + [all_thinking[r - 1][i]] + others
                thinking, answer = debate_agents[i](input_infos, debate_instruction)
            all_thinking[r].append(thinking)
            all_answer[r].append(answer)
    thinking, answer = final_decision_agent(
        [taskInfo] + all_thinking[max_round - 1] + all_answer[max_round - 1], final_decision_instruction
    )
    return answer
'''


def step_back() -> str:
    return f"""def forward(self, taskInfo):
    # Step-back Abstraction: first name the principles involved, then solve with them in view.
    principle_instruction = {PRINCIPLE!r}
    cot_instruction = {PRINCIPLE_COT!r}
    principle_agent = LLMAgentBase(["thinking", "principle"], "Principle Agent")
    cot_agent = LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent")
    thinking, principle = principle_agent([taskInfo], principle_instruction)
    thinking, answer = cot_agent([taskInfo, thinking, principle], cot_instruction)
    return answer
"""


def quality_diversity(n: int = 3, temperature: float = 0.8) -> str:
    return f'''def forward(self, taskInfo):
    # Quality-Diversity: ask for different ways of solving the task, then decide among them.
    cot_initial_instruction = "{COT}"
    qd_instruction = {QD!r}
    cot_agent = LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent", temperature={temperature})
    final_decision_instruction = {QD_FINAL!r}
    final_decision_agent = LLMAgentBase(["thinking", "answer"], "Final Decision Agent", temperature=0.1)
    N_max = {n}
    cot_inputs = [taskInfo]
    possible_answers = []
    thinking, answer = cot_agent(cot_inputs, cot_initial_instruction, 0)
    possible_answers.extend([thinking, answer])
    for i in range(N_max):
        cot_inputs.extend([thinking, answer])
        thinking, answer = cot_agent(cot_inputs, qd_instruction, i + 1)
        possible_answers.extend([thinking, answer])
    thinking, answer = final_decision_agent([taskInfo] + possible_answers, final_decision_instruction)
    return answer
'''


def role_assignment(roles: list[str]) -> str:
    experts = [*roles, "Helpful Assistant"]
    routing = (
        f"Given the task, please choose an Expert to answer the question. Choose from: {', '.join(roles)}."
    )
    return f'''def forward(self, taskInfo):
    # Dynamic Assignment of Roles: a router picks the expert best suited to the task.
    cot_instruction = "{COT}"
    roles = {experts!r}
    expert_agents = [LLMAgentBase(["thinking", "answer"], "Expert Agent", role=role) for role in roles]
    routing_instruction = {routing!r}
    routing_agent = LLMAgentBase(["choice"], "Routing agent")
    choice = str(routing_agent([taskInfo], routing_instruction)[0].content).lower()
    expert_id = len(roles) - 1
    for i, role in enumerate(roles[:-1]):
        if role.lower() in choice or role.split()[-1].lower() in choice:
            expert_id = i
            break
    thinking, answer = expert_agents[expert_id]([taskInfo], cot_instruction)
    return answer
'''


def seed_archive(benchmark: str) -> list[SeedCandidate]:
    roles = ROLES.get(benchmark, ROLES["mgsm"])
    return [
        SeedCandidate(name="chain_of_thought", thought="Chain-of-Thought (Wei et al. 2022).", code=cot()),
        SeedCandidate(name="cot_sc", thought="Self-Consistency with CoT (Wang et al. 2023).", code=cot_sc()),
        SeedCandidate(
            name="self_refine", thought="Self-Refine / Reflexion (Madaan et al. 2023).", code=self_refine()
        ),
        SeedCandidate(name="llm_debate", thought="LLM Debate (Du et al. 2023).", code=debate(roles)),
        SeedCandidate(
            name="step_back", thought="Step-back Abstraction (Zheng et al. 2023).", code=step_back()
        ),
        SeedCandidate(
            name="quality_diversity", thought="Quality-Diversity (Lu et al. 2024).", code=quality_diversity()
        ),
        SeedCandidate(
            name="role_assignment",
            thought="Dynamic Assignment of Roles (Xu et al. 2023).",
            code=role_assignment(roles),
        ),
    ]
