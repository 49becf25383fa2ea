"""A scripted LangChain chat model that drives the toolkit's ReAct agent without a model server,
and a `capital_of` tool.

The model answers from the question alone: "capital of <Country>" asks the tool once, then
answers with its observation; anything else is answered at once. It streams its text in words
(so the toolkit records LLM_NEW_TOKEN steps) and reports token usage on the last chunk, as
OpenAI-style streaming does. Being a real ``BaseChatModel``, it fires LangChain's callbacks, which
is how the toolkit records LLM steps.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Iterator

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from nat.builder.builder import Builder
from nat.builder.framework_enum import LLMFrameworkEnum
from nat.builder.function_info import FunctionInfo
from nat.builder.llm import LLMProviderInfo
from nat.cli.register_workflow import register_function, register_llm_client, register_llm_provider
from nat.data_models.function import FunctionBaseConfig
from nat.data_models.llm import LLMBaseConfig

CAPITALS = {"france": "Paris", "germany": "Berlin", "japan": "Tokyo", "peru": "Lima", "kenya": "Nairobi"}


def _text(messages: list[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


def _reply(messages: list[BaseMessage]) -> str:
    text = _text(messages)
    # The tool's answer, once the agent has put it in the scratchpad.
    observed = re.findall(r"(The capital of \w+ is \w+\.|No capital found for \w+\.)", text)
    if observed:
        return f"Thought: I now know the final answer.\nFinal Answer: {observed[-1]}"
    questions = re.findall(r"capital of ([A-Z][a-z]+)", text)
    if questions:
        country = questions[-1]
        return (
            f"Thought: I should look up the capital of {country}.\n"
            f"Action: capital_of\nAction Input: {{\"country\": \"{country}\"}}\n"
        )
    return "Thought: I can answer directly.\nFinal Answer: Hello."


class ScriptedChatModel(BaseChatModel):
    model_name: str = "scripted-react-1"
    delay_ms: int = 80

    @property
    def _llm_type(self) -> str:
        return "agentprof-scripted"

    def _usage(self, messages: list[BaseMessage], reply: str) -> dict[str, int]:
        prompt, completion = len(_text(messages).split()), len(reply.split())
        return {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        time.sleep(self.delay_ms / 1000)
        reply = _reply(messages)
        message = AIMessage(content=reply, usage_metadata=self._usage(messages, reply),
                            response_metadata={"model_name": self.model_name})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        time.sleep(self.delay_ms / 1000)
        reply = _reply(messages)
        words = reply.split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            chunk = AIMessageChunk(
                content=word if last else word + " ",
                usage_metadata=self._usage(messages, reply) if last else None,
                response_metadata={"model_name": self.model_name} if last else {},
            )
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.content, chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)
            time.sleep(0.002)


class ScriptedLLMConfig(LLMBaseConfig, name="agentprof_scripted_llm"):
    model_name: str = Field(default="scripted-react-1")
    delay_ms: int = Field(default=80)


@register_llm_provider(config_type=ScriptedLLMConfig)
async def scripted_llm(config: ScriptedLLMConfig, _builder: Builder):
    yield LLMProviderInfo(config=config, description="A scripted offline chat model.")


@register_llm_client(config_type=ScriptedLLMConfig, wrapper_type=LLMFrameworkEnum.LANGCHAIN)
async def scripted_llm_langchain(config: ScriptedLLMConfig, _builder: Builder):
    yield ScriptedChatModel(model_name=config.model_name, delay_ms=config.delay_ms)


class CapitalOfConfig(FunctionBaseConfig, name="capital_of"):
    delay_ms: int = Field(default=40)


@register_function(config_type=CapitalOfConfig)
async def capital_of(config: CapitalOfConfig, _builder: Builder):
    async def _capital_of(country: str) -> str:
        await asyncio.sleep(config.delay_ms / 1000)
        name = country.strip().strip('"').lower()
        found = CAPITALS.get(name)
        return f"The capital of {country} is {found}." if found else f"No capital found for {country}."

    yield FunctionInfo.from_fn(_capital_of, description="Returns the capital city of a country.")
