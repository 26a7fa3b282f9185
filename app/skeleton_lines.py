"""One line of a skeleton: is it a list item, and what is its title (the skeleton reader's line rules).

``SkeletonParser`` (``skeleton.py``) keeps the state across lines; everything here reads one line (or one
table row, or one piece of an HTML list) on its own, so the rules can be tested line by line.
"""

from __future__ import annotations

import html
import itertools
import re

MAX_TITLE_CHARS = 120
_HAN = "\u4e00\u4e8c\u4e09\u56db\u4e94\u516d\u4e03\u516b\u4e5d\u5341"  # Chinese numerals 1..10

# What may follow a number's mark with no space: an opening quote or bracket, an emoji or a symbol ("1."T"",
# "1.[T](url)", "1.✅ T"); else a letter, emphasis or a space.
_OPENERS = (
    "[\"'\u201c\u2018\\[\u300c\u3010\u2190-\u21ff\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\u25a0-\u25ff"
    "\U0001f300-\U0001f5ff\U0001f680-\U0001faff]"
)
# A point's marker, after any heading hashes and an opening emphasis: "1." "1)" "1.)" "1:" "(1)" "1、" "**1**."
# (not "1.5" or "10:30": a digit may not follow), "1/ " (not "1/2 cup"), "[1] ", "1 . ", "1 - ", "1- " or "**1**- "
# (a dash before a space), "1.- " or "1.-T" (as Spanish answers write it), "#1 " or "#1. ", "1\\. " (escaped), "II."
# (Roman, up to XXXIX), "1️⃣", "1️⃣0️⃣", "🔟", "①", "⑴", "⒈" (also right before a word: "①T"), "【1】", Chinese and
# Japanese forms (below), or "Step 1:" style words ("Tip #2:", "Step Three:", "Part II:", "Day 4 -", "Day 1
# (Monday):", "Step1:", "Q5:", "Key Point 1:", "Pro Tip 2:", "[Step 1] T", "Step 1 | T").
_NUMBER = re.compile(
    r"(?:\(\s?(\d{1,2})\s?\)|(\d{1,2})(?:\*\*|__)?(?:\.\)|[.):\]]))(?=\s|\*|_|$|[^\W\d_]|" + _OPENERS + ")"
    r"|\d{1,2}[\u3001\u3002\uff0e\uff09\uff1a]"
    # a number in bold with no mark before a title that is no word of a sentence ("**1** Title", not "**1** in 3")
    r"|\d{1,2}(?:\*\*|__)(?=\s+[^a-z\s])"
    r"|\d{1,2}(?:\*\*|__)?\s?[-\u2013\u2014](?=\s|\*\*|__)|\d{1,2}\s?\.[-\u2013\u2014](?=\s|\*\*|__|[^\W\d_])"
    r"|#\d{1,2}[.):]?(?=\s)"
    r"|[\u2460-\u249b\u24eb-\u24fe\u2776-\u2793\u3220-\u3229\u3280-\u3289\U0001f51f][.)\u3001]?(?=\s|[^\W\d_])"
    r"|X{0,3}(?:IX|IV|V?I{0,3})[.)](?=\s)(?<!^[.)])|(?:\d\ufe0f?\u20e3)+|\d{1,2}(?:\\[.)]|/|\s\.)(?=\s)"
    r"|\[\d{1,2}\](?=\s|\*\*|__)"
    # "<1> T", "§1 T", superscript digits ("¹ T"), "1 | T" (a table's row without its separator row), a tab after a
    # number ("1<tab>T"), AsciiDoc's ordered ". T"
    r"|<\d{1,2}>(?=\s)|\u00a7\s?\d{1,2}[.):]?(?=\s)|[\u00b9\u00b2\u00b3\u2070\u2074-\u2079]{1,2}[.)]?(?=\s)"
    r"|\d{1,2}\s\|(?=\s)|\d{1,2}\t+(?=\S)|\.(?=\s+[^\s.])"
    # Unicode Roman numerals ("Ⅱ. T"), Korean "1단계: T" ("step 1") and "1번. T" ("number 1"; "1번 출구" is prose)
    r"|[\u2160-\u216b\u2170-\u217b][.)\u3001\uff0e](?=\s|[^\W\d_])|\d{1,2}\s?(?:\ub2e8\uacc4[.:)]?|\ubc88[.:)])(?=\s|\*\*|__)"
    # an arrow after the number ("1 -> T", "1 => T", "1 → T"; not "1 -> 2"), reStructuredText's auto-numbered "#.",
    # the number sign ("№1. T") and ordinal indicators ("1º T", "2ª) T", "1°) T"; not "20° outside")
    r"|\d{1,2}\s?(?:->|=>|\u2192|\u21d2)(?=\s+[^\d\s])|#\.(?=\s)|\u2116\s?\d{1,2}[.):]?(?=\s)"
    r"|\d{1,2}(?:[\u00ba\u00aa][.)]?|\u00b0[.)])(?=\s)"
    # lenticular brackets: "【1】T", "【一】T"
    rf"|\u3010(?:\d{{1,2}}|[{_HAN}]{{1,3}})\u3011"
    # Chinese and Japanese: "一、" "（一）" "（1）" "第一，" "第2步：" "步骤3：" (a separator or a space after, so
    # "第一次" is a word)
    rf"|[{_HAN}]{{1,3}}[\u3001\uff0e.]|[(\uff08][{_HAN}]{{1,3}}[)\uff09]|\uff08\d{{1,2}}\uff09"
    rf"|(?:\u7b2c[{_HAN}\d]{{1,3}}[\u6b65\u70b9\u6761\u4e2a\u9879\u90e8\u7ae0\u8282\u5929\u5468]?|\u6b65\u9aa4\s?\d{{1,2}})"
    r"(?:[\u3001\uff0c,:\uff1a.\uff0e]|\s)"
)
_SUPERSCRIPTS = "\u00b9\u00b2\u00b3\u2070\u2074\u2075\u2076\u2077\u2078\u2079"
# Superscript digits as digits (a footnote's or a superscript-numbered item's number).
SUPERSCRIPT_DIGITS = str.maketrans(_SUPERSCRIPTS, "1230456789")
# "#1" with no mark, and a sentence after it that starts with a small letter ("#1 priority is rest."; "#1 Plan it" and
# "#1 plan it" are points).
_HASH_SENTENCE = re.compile(r"#\d{1,2}$")
_SENTENCE_ITEM = re.compile(r"[a-z][^\n]*\s[^\n]*[.!?]")
_ROMAN_MARKER = re.compile(r"(?:[IVX]+|[\u2160-\u216b])[.)\u3001\uff0e]")
# A bullet that opens a YAML map with its title ("- title: T", "- name: 'T'", as a model asked for YAML writes
# a list of points): the value is the title, not the key; or with a number key ("- id: 1"): the title is on a line
# under it, as under a number alone on its line.
_YAML_TITLE = re.compile(r"(?:title|point|heading|topic|name|label|step|tip|idea)\s*:\s+(\S.*)")
_YAML_NUMBER = re.compile(r"(?:id|number|no|index|n|point|step|rank|order)\s*:\s*\d{1,2}")
_DEFINITION = re.compile(r"[:~][ \t]+\S")  # a definition under its term ("Term" then ": text")
# An item written as an XML element alone on its line ("<point>T</point>", "<step n="2">T</step>", as a model asked
# for XML writes a list; a wrapper such as "<points>" is no text).
XML_ITEM = re.compile(r"<(point|item|step|tip|idea|section|topic|entry)\b[^<>]*>(.+?)</\1\s*>", re.IGNORECASE)
_HAN_START = re.compile(rf"([(\uff08])?[{_HAN}\u7b2c\u6b65]")
_NUMBER_WORDS = "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
_KEYWORD = re.compile(
    r"\[?(?:(?:Key|Main|Pro|Bonus|Top|Core|Action|Quick|Final|Extra|Golden|Essential|Important|Practical|Daily|Big)\s+)?"
    r"(?i:step|point|tip|part|section|stage|phase|item|idea|reason|way|day|week|month|year|chapter|lesson|rule|"
    r"strategy|method|option|factor|benefit|principle|habit|technique|question|task|goal|level|round|example|"
    r"suggestion|recommendation|myth|mistake|sign|tool|trick|hack|fact|feature|trend|skill|exercise|solution|"
    r"advantage|disadvantage|challenge|risk|consideration|aspect|topic|activity|session|module|unit|scenario|"
    r"approach|case|problem|issue|practice|pillar|law|component|element|number|no\.|"
    # the same words in Spanish, German, French, Italian, Portuguese, Dutch, Polish, Turkish and Russian ("Paso 1:",
    # "Schritt 2:", "Étape 3 :", "Dica 1:", "Stap 2:", "Krok 3:", "Adım 4:", "Шаг 5:")
    r"paso|etapa|consejo|punto|d[ií]a|semana|mes|schritt|tipp|tag|woche|monat|punkt|regel|[ée]tape|conseil|"
    r"jour|semaine|mois|passo|fase|giorno|dica|stap|dag|krok|ad[ıi]m|ipucu|шаг|совет|пункт|день|этап|неделя|"
    # German "Nr. 1:", Vietnamese, Indonesian and Japanese ("Bước 1:", "Langkah 1:", "ステップ1：", "ポイント2：")
    r"nr\.|b\u01b0\u1edbc|m\u1eb9o|ng\u00e0y|langkah|hari|kiat|\u30b9\u30c6\u30c3\u30d7|\u30dd\u30a4\u30f3\u30c8|\u30d2\u30f3\u30c8)s?"
    # its number: digits (a range too: "Weeks 1-2:"), a word, a Roman number or a capital letter ("Option A:")
    rf"(?:\s*#?\d{{1,2}}(?:\ufe0f?\u20e3|\s?[-–]\s?\d{{1,2}}(?=(?:\*\*|__)?\s*[:.)]))?|\s+(?i:{_NUMBER_WORDS})|\s+[IVX]{{1,4}}"
    r"|\s+[A-Z](?=\W))(?:\s+of\s+\d{1,2}|\s?/\s?\d{1,2}|\s*\([^()\n]{1,30}\))?(?:\*\*|__)?"
    r"\s*(?:(?:\]:?|[:.)\uff1a])(?!\d)|\s[-–—|](?=\s|\*\*|__)|(?<=\*\*\s|__\s)(?=\S))"
    r"|Q\d{1,2}[:.)](?=\s)"
)
# Ordinal words that number lines, by their number (0: "Finally", the next one): English, Spanish, Portuguese,
# Italian, German, French, Dutch, Russian, Polish, Turkish and Korean; then Chinese and Japanese ones.
_ORDINAL_WORDS = (
    "finally|lastly|last but not least|finalmente|por último|por fim|infine|schließlich|zuletzt|enfin|finalement|"
    "tot slot|наконец|na koniec|son olarak|마지막으로",
    "first|firstly|first of all|primero|en primer lugar|primeiro|em primeiro lugar|primo|in primo luogo|erstens|"
    "premièrement|en premier lieu|ten eerste|во-первых|po pierwsze|birincisi|첫째",
    "second|secondly|segundo|en segundo lugar|em segundo lugar|secondo|in secondo luogo|zweitens|deuxièmement|"
    "en second lieu|ten tweede|во-вторых|po drugie|ikincisi|둘째",
    "third|thirdly|tercero|en tercer lugar|terceiro|em terceiro lugar|terzo|in terzo luogo|drittens|troisièmement|"
    "en troisième lieu|ten derde|в-третьих|po trzecie|üçüncüsü|셋째",
    "fourth|fourthly|cuarto|quarto|viertens|quatrièmement|ten vierde|в-четвёртых|в-четвертых|po czwarte|"
    "dördüncüsü|넷째",
    "fifth|fifthly|quinto|fünftens|cinquièmement|ten vijfde|в-пятых|po piąte|beşincisi|다섯째",
    "sixth|sixthly|sexto|sesto|sechstens|sixièmement|в-шестых|여섯째",
    "seventh|seventhly|séptimo|sétimo|settimo|siebtens|septièmement|в-седьмых",
    "eighth|eighthly|octavo|oitavo|ottavo|achtens|huitièmement|в-восьмых",
    "ninth|ninthly|noveno|nono|neuntens|neuvièmement|в-девятых",
    "tenth|tenthly|décimo|decimo|zehntens|dixièmement|в-десятых",
)
_HAN_ORDINAL_WORDS = (
    "\u6700\u540e|\u6700\u5f8c\u306b",  # 最后, 最後に
    "\u9996\u5148|\u7b2c\u4e00\u306b",  # 首先, 第一に
    "\u5176\u6b21|\u7b2c\u4e8c\u306b",  # 其次, 第二に
    "\u518d\u6b21|\u7b2c\u4e09\u306b",  # 再次, 第三に
    "\u7b2c\u56db\u306b",
    "\u7b2c\u4e94\u306b",
)
_ORDINAL_NUMBERS = {
    word: number
    for words in (_ORDINAL_WORDS, _HAN_ORDINAL_WORDS)
    for number, alt in enumerate(words)
    for word in alt.split("|")
}


def _alternation(words: tuple[str, ...]) -> str:
    """A regex alternation of ``words`` ("a|b" groups), longest first ("firstly" before "first")."""
    every = sorted((w for alt in words for w in alt.split("|")), key=len, reverse=True)
    return "|".join(re.escape(w).replace("\\ ", "\\s+") for w in every)


# A line numbered by an ordinal word ("First, T", "Secondly: T", "**Third:** T", "### Fourth - T", "First of all,
# T", "First step: T", "1st: T", "Erstens, T", "Во-первых, T"; "Finally, T" the next; Chinese "首先，" "其次，"
# "再次，" "最后，", Japanese "第一に、"): a separator must follow it ("First things first" is prose).
_ORDINAL = re.compile(
    rf"(?:#{{1,6}}\s+)?(\*\*|__)?(?:(?i:({_alternation(_ORDINAL_WORDS)})|(\d{{1,2}})(?:st|nd|rd|th))(?:\s+[A-Za-z]{{2,12}})?"
    r"(?:\1)?\s*(?:[,:.\uff1a]|\s[-\u2013\u2014])(?:\1)?\s+"
    rf"|({_alternation(_HAN_ORDINAL_WORDS)})(?:\1)?[\uff0c,\u3001:\uff1a](?:\1)?\s*)(?=\S)"
)
# A sentence that numbers itself ("The first step is to plan.", "The second thing you should do is rest.", "The
# final step is to review."): the title is what follows.
_ORDINAL_SENTENCE = re.compile(
    r"(?i:the\s+(?:very\s+)?(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|next|final|last)"
    r"(?:\s+(?!is\b)[a-z']{2,12}){0,4}?\s+(?:is|would\s+be|should\s+be|will\s+be)\s+(?:to\s+)?)(?=\S)"
)
# "No. 1 T" with no separator after the number (with one, "No. 1:" is a keyword label): read as an ordinal list,
# from its third line, since "No. 1 fan" alone is prose.
_NO_NUMBER = re.compile(r"(?:#{1,6}\s+)?(\*\*|__)?(?:No|Nr|Number)\.?\s?(\d{1,2})(?:\1)?\s+(?=\S)")
# A number with no mark before a capitalised title ("1 Plan it", "## 1 Plan it"; "2 eggs" or "1 in 3 adults" is
# prose, and "## 5 Tips for sleep" one heading), read as an ordinal list, from its third line.
_BARE_NUMBER = re.compile(r"(?:#{1,6}\s+)?(\d{1,2})[ \t]+(?=[A-Z])")
# The text of a last ordinal line that closes the answer instead of adding a point ("Finally, I hope this helps.").
CLOSING_WORDS = re.compile(
    r"(?i:i\s+hope|hope\s+(?:this|these|that|it|you)|good\s+luck|best\s+of\s+luck|let\s+me\s+know|feel\s+free"
    r"|thanks?\b|happy\s+\w+ing|enjoy\b|if\s+you\s+have\s+(?:any\s+)?(?:more\s+|further\s+)?questions"
    r"|by\s+following|with\s+these|(?:all\s+)?these\s+(?:tips|steps|strategies|ideas|suggestions|practices|habits)\b)"
)
# A fraction that numbers a line ("1/5 T", "**2/5:** T", as a thread is numbered; "1/ T" is a number's mark).
_FRACTION = re.compile(
    r"(?:#{1,6}\s+)?(\*\*|__)?(\d{1,2})/(\d{1,2})(?:\1)?(?:[.):]|\s[-\u2013\u2014])?(?:\1)?\s+(?=\S)"
)
# Where a sentence ends: an ordinal item's title is its first.
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])|(?<=[\u3002\uff01\uff1f])")
# A bullet, symbol or emoji written before a number ("- 1. T", "🔹 1. T", "### ✅ 1. T"): decoration, the number
# is the marker.
_DECORATION = re.compile(
    r"[-*•+\u2190-\u21ff\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\u25a0-\u25ff\U0001f300-\U0001f5ff\U0001f680-\U0001faff]\ufe0f?\s+"
)
# Bullets: "-", "*", "•", "+", "–", "◦", "▪", "●", "‣", "·", "⁃", arrows, check marks, stars and other symbol or
# emoji bullets ("✅", "🔹", "👉", "→", "➤", "★"; not the smileys a closing line may start with) and a space,
# then an optional task box ("[ ]", "[x]"). A single letter ("a." "B)" "(c)") or a lower-case Roman number
# ("ii.", "(iv)") reads as a bullet too, so a lettered list under a numbered one stays its sub-items; so do
# Cyrillic and Korean letters ("а)", "가."), LaTeX's "\item T", an em dash ("— T") and the Japanese "・T".
_BULLET = re.compile(
    r"(?:(?:[-*•+–—◦▪●‣·\u2043\u2219\u2981\u2190-\u21ff\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\u25a0-\u25ff\U0001f300-\U0001f5ff\U0001f680-\U0001faff]"
    r"\ufe0f?|\(?(?:[a-zA-Z\u0430-\u044f]|(?=[ivx]{2})x{0,3}(?:ix|iv|v?i{0,3})"
    r"|[\uac00\ub098\ub2e4\ub77c\ub9c8\ubc14\uc0ac\uc544\uc790\ucc28\uce74\ud0c0\ud30c\ud558])[.)]"
    r"|\\item(?:\[[^\]]*\])?)\s+|[\u30fb\uff65]\s*|[•◦▪●‣](?=[^\W\d_]))(?:\[[ xX]\]\s+)?"
)
# A number alone in a heading or in bold ("### 1", "**2**"): a number alone on its line, its title on the next.
_NUMBER_ALONE = re.compile(r"(?:#{1,6}\s*(\*\*|__)?|(\*\*|__))\d{1,2}(?:\1|\2)?")
_HEADING = re.compile(r"#{1,6}\s+|#{2,6}(?=\d)")  # "### T", or "###1. T" (but "#1 T" is a number)
_HEADING_CLOSE = re.compile(r"\s+#+\s*$")  # a heading's optional closing hashes ("## 1. T ##")
# A sub-number ("2.1 Details", "**1.2.3**"): under a point even when it is not indented.
SUB_NUMBER = re.compile(r"(?:\*\*|__)?\d{1,2}(?:\.\d{1,2})+\.?(?=[\s*_])")
# Such a number where it numbers the list itself ("1.1 T", "**1.2 T**", "### 2.1. T").
_DOTTED = re.compile(r"(?:#{1,6}\s+)?(?:\*\*|__)?(\d{1,2}(?:\.\d{1,2})+\.?)(?=[\s*_])")
_SYMBOLS_FIRST = re.compile(
    r"(?:(?!\w)[\u2190-\u21ff\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\u25a0-\u25ff\U0001f300-\U0001f5ff\U0001f680-\U0001faff]\ufe0f?\s*)+"
    r"(?=\S)"
)
_EMPHASIS = re.compile(r"\*\*\*|___|\*\*|__|\*(?!\s)")
# Where a title ends and its description starts: ": " (or a final ":"), a full-width "：" (or ":" right after a
# Chinese, Japanese or Korean character: "标题:描述"), a spaced dash (or "--"), or
# an HTML line break ("1. Title<br>description"); an em dash ends it even unspaced ("Title—description"), an
# en dash only spaced ("7–9 hours" is one title).
_TITLE_END = re.compile(
    r":\s|:$|\uff1a|(?<=[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]):|\s(?:--|[-–|])\s|\u2014|<br\s*/?>", re.IGNORECASE
)
_SEPARATORS = ":.-–—\uff1a"
_CODE_SPAN = re.compile(r"`[^`]*`")
# A title in lenticular brackets before its text ("【T】说明", "〖T〗：说明"), as Chinese answers write a label.
_BRACKET_LABEL = re.compile(r"[\u3010\u3016]([^\u3010\u3011\u3016\u3017]+)[\u3011\u3017]")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_TRIM = " \t*_:;,.-–—\\\u3002\uff1b\uff0c\uff1a"  # what a title does not start or end with
_WORD_COUNT = re.compile(r"\s*[(\[]\s*\d{1,2}\s+words?\s*[)\]]$", re.IGNORECASE)  # "(4 words)" after a title
_QUOTES = dict(zip("\"\u201c'\u2018\u300c\u300e", "\"\u201d'\u2019\u300d\u300f", strict=True))  # opening: closing
# An unnumbered heading ("## T"), a line that is a bold label ("**T**", "**T:** description"), or a short plain
# label ("Pros:").
_LABEL_LINE = re.compile(r"(?:(#{1,6})\s+(.+)|(\*\*|__)(.+?)\3(.*)|([^\W\d_a-z][^\W\d_]*(?:[ '’-][^\W\d_]+){0,4}):)$")
# A letter that numbers a heading or a bold label ("## A. Diet", "**B.** Sleep", "**C) Rest**"): not the title.
_LETTER = re.compile(r"\(?[A-Za-z][.)](?:\s+|$)")
# A heading that names the skeleton itself ("Skeleton", "Answer outline", "The plan"), not a point: the whole title.
_GENERIC = re.compile(
    r"(?:(?:here is|here's|the|my|a|an|your)\s+)?(?:answer\s+|response\s+)?"
    r"(?:skeleton|outline|answer|response|plan|overview|summary)(?:\s+(?:skeleton|outline))?"
    r"(?:\s+(?:of|for)\s+(?:the|my|this|your)\s+(?:answer|response|question))?",
    re.IGNORECASE,
)
# Words of a label that leads in to a list instead of heading one part of it.
_LEAD_IN = re.compile(r"\b(?:here|following|below|these|some|tips|ways|steps|ideas|points|key)\b", re.IGNORECASE)
# The heading of a references list ("References:", "## Sources", "**Further reading**"): what follows is no point.
REFERENCES = re.compile(
    r"(?:#{1,6}\s+)?(?:\*\*|__)?(?:references|sources|citations|bibliography|works cited|further reading)"
    r"\s*:?\s*(?:\*\*|__)?\s*:?",
    re.IGNORECASE,
)
# The heading of a recap after the points, alone on its line ("## Summary", "**Key takeaways:**", "In summary:"):
# what follows repeats the points (often as a list numbered from 1 again), so it adds none. (A label with text
# after it, "**Key takeaway:** ...", is more often an item's own.)
RECAP = re.compile(
    r"(?:#{1,6}\s+)?(\*\*|__)?(?:in\s+(?:summary|conclusion|short|a\s+nutshell)|to\s+(?:summari[sz]e|sum\s+up|recap)"
    r"|(?:quick\s+|brief\s+)?(?:summary|recap|conclusion)|key\s+takeaways?|final\s+thoughts|bottom\s+line|tl;?\s?dr)"
    r"\s*:?\s*(?:\1\s*:?)?",
    re.IGNORECASE,
)
# A reasoning block's tags ("<think>" ... "</think>", as DeepSeek-R1 and Qwen3 write them before the answer; also
# "<thinking>" and "<reasoning>"): what is inside is the model's reasoning, never the list.
THINK_OPEN = re.compile(r"\s*<(?:think|thinking|reasoning)>", re.IGNORECASE)
THINK_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
# A token that ends the model's turn, written out as text (a chat template or tokenizer that does not hide it):
# ChatML, Llama 3, Phi, Gemma, Command R, DeepSeek, and Llama 2's "</s>".
_END_OF_TURN = re.compile(
    r"<\|(?:im_end|im_start|eot_id|end|endoftext|end_of_text|start_header_id|END_OF_TURN_TOKEN)\|>|<end_of_turn>"
    r"|<\uff5cend\u2581of\u2581sentence\uff5c>|</s>"
)
# A "[1] ..." line that cites instead of naming a point: a link, a DOI, "et al." or a year in parentheses.
_CITATION = re.compile(
    r"https?://|www\.|\bdoi\b|\bet al\b|\(\d{4}[a-z]?\)|,\s*(?:1[5-9]|20)\d\d[a-z]?\.?$", re.IGNORECASE
)
# Invisible characters a model or an editor may leave in a line (a byte order mark, zero-width spaces, a word
# joiner, soft hyphens, direction marks, embeddings and isolates): they would stop a marker from matching or stay in
# a title.
INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u2060\u200e\u200f\u00ad\u061c\u202a\u202b\u202c\u202d\u202e"))
INVISIBLE.update(dict.fromkeys(range(0x2066, 0x206A)))
# A zero-width joiner or non-joiner next to an ASCII character, a space or the line's edge: it joins nothing there
# (between two emoji or two letters of a script that shapes them, it is part of the text).
_LONE_JOINER = re.compile(r"(?<![^\x00-\x7f\s])[\u200c\u200d]|[\u200c\u200d](?![^\x00-\x7f\s])")
# An HTML character reference ("&nbsp;", "&amp;", "&#39;", "&#x2014;"), as a model that writes HTML leaves in text.
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")
_URL = re.compile(r"<?(?:https?://|www\.)\S+>?")
# A blockquote's markers ("> ", "> > "): a list inside a quote is read like one outside it; the indentation
# before them stays (a quote indented under an item is part of it).
QUOTE = re.compile(r"^([ \t]{0,3})(?:>[ \t]?)+")
# A thematic break ("---", "***", "* * *", "___"): it separates blocks, as a blank line does.
THEMATIC_BREAK = re.compile(r"([-*_])[ \t]*(?:\1[ \t]*){2,}")
# A line break tag before the next item ("1. A<br>2. B<br>3. C"): the items' lines.
BREAK_BEFORE_ITEM = re.compile(r"<br\s*/?>\s*(?=(?:\d{1,2}[.)]|[-*\u2022])\s)", re.IGNORECASE)
# A setext heading's underline ("=====" or "-----" right under a line of text; "- - -" is a thematic break).
SETEXT = re.compile(r"={2,}|-{2,}")
# An image alone on its line ("![chart](chart.png)"): no text.
IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
# The first and the next numbers of a list written on one line ("1. A 2. B 3. C").
_INLINE_FIRST = re.compile(r"\s*(\d{1,2})([.)])\s+(?=\S)")
_INLINE_AFTER_COLON = re.compile(r"(?<=:)\s+(1)([.)])\s+(?=\S)")
_INLINE_NEXT = re.compile(r"(?<=\s)(\d{1,2})([.)])\s+(?=\S)")
# Where a streamed line is cut into pieces besides "\n": before each HTML list tag, once the tag is complete, so
# "<ol><li>A</li><li>B</li></ol>" on one line gives one piece per item as soon as it is written.
HTML_BREAK = re.compile(r"(?=</?(?:li|ol|ul)\b[^<>\n]*>)", re.IGNORECASE)
# Such a break right after another tag (and any spaces): where a line that does not start with a tag is cut.
HTML_BREAK_AFTER_TAG = re.compile(r"(?<=>)(\s*)(?=</?(?:li|ol|ul)\b[^<>\n]*>)", re.IGNORECASE)
_HTML_TAG = re.compile(r"<(/?)(li|ol|ul)\b[^<>]*>", re.IGNORECASE)
# A lead-in that opens an HTML list at its end ("Here are some tips: <ol>").
LIST_OPENED = re.compile(r"(?<=:)\s*<(ol|ul)\b[^<>]*>$", re.IGNORECASE)
_HTML_STRONG = re.compile(r"</?(?:strong|b)\b[^<>]*>", re.IGNORECASE)
_HTML_ANY = re.compile(r"</?[a-zA-Z][^<>]*>")
# A table's separator row ("|---|:---:|"); a cell that only numbers its row ("1", "#2", "3.", "Step 4", "IV").
TABLE_SEPARATOR = re.compile(r"\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)+\|?|\|\s*:?-+:?\s*\|")
_ROW_NUMBER = re.compile(
    r"(?:#|(?i:no\.?\s*|(?:step|day|part|phase|stage)\s+))?\(?\d{1,2}[.):]?\)?|[IVX]{1,5}\.?|(?:\d\ufe0f?\u20e3)+"
    r"|[\u2460-\u249b\u24eb-\u24fe\u2776-\u2793\u3220-\u3229\u3280-\u3289\U0001f51f]"
)


def visible(line: str) -> str:
    """``line`` as it reads: character references decoded (but "&lt;" and "&gt;": a tag written out as text stays
    text), invisible characters and joiners that join nothing dropped."""
    if "&" in line:
        line = _ENTITY.sub(_decoded, line)
    line = line.translate(INVISIBLE)
    return _LONE_JOINER.sub("", line) if ("\u200c" in line or "\u200d" in line) else line


def _decoded(entity: re.Match[str]) -> str:
    text = html.unescape(entity.group())
    return entity.group() if text in ("<", ">") else text


def title_key(title: str) -> str:
    """What two titles share when they are the same point (case and spaces aside)."""
    return " ".join(title.lower().split())


def clean_title(raw: str, *, whole: bool = False) -> str:
    """A point title without emphasis or a description: emphasis and links unwrapped, the part before a ": "
    or a spaced dash (unless ``whole``: an emphasised label is the title as a whole, "**Python 3.11: faster**"),
    no trailing punctuation, no word count a model wrote after it ("(4 words)"), no quotes around all of it; an
    overlong title is cut at a word boundary.
    Code spans and quotes inside stay: they are part of what the title says ("Use `git bisect`", "Say \"no\" more
    often")."""
    title = _LINK.sub(r"\1", raw)
    title = title.replace("**", "").replace("__", "")
    if not whole:
        title = _before_description(title.strip())
    title = " ".join(title.split()).strip(_TRIM)
    title = _WORD_COUNT.sub("", title).rstrip(_TRIM)
    inner = title[1:-1]
    if len(title) > 2 and _QUOTES.get(title[0]) == title[-1] and title[0] not in inner and title[-1] not in inner:
        title = inner.strip(_TRIM)  # '"Keep a schedule"': the quotes hold the whole title
    if len(title) > MAX_TITLE_CHARS:
        cut = title[:MAX_TITLE_CHARS].rsplit(" ", 1)[0].rstrip(" ,;:.-–—")
        title = cut or title[:MAX_TITLE_CHARS]
    return title


def _before_description(text: str) -> str:
    """``text`` up to its first ``_TITLE_END`` outside a code span ("Set `a: b` first: why" gives "Set `a: b`
    first"). One pass over both lists of matches."""
    if "`" not in text:
        end = _TITLE_END.search(text)
        return text if end is None else text[: end.start()]
    spans = _CODE_SPAN.finditer(text)
    span = next(spans, None)
    for end in _TITLE_END.finditer(text):
        while span is not None and span.end() <= end.start():
            span = next(spans, None)
        if span is None or end.start() < span.start():
            return text[: end.start()]
    return text


def _emphasis_label(body: str) -> str | None:
    """The emphasised text of ``**Title**: description`` (a label: nothing, a separator or a new sentence after
    it); None when the line only starts with an emphasised word ("**Don't** skip breakfast")."""
    opener = _EMPHASIS.match(body)
    if opener is None:
        return None
    mark = opener.group()
    close = body.find(mark, len(mark))
    if close < 0:
        return None
    after = body[close + len(mark) :].lstrip()
    if after and after[0] not in _SEPARATORS and not after[0].isupper():
        return None
    return body[len(mark) : close]


def body_title(body: str) -> str:
    """The title of an item's text after its marker: a bold label if it has one, else the text up to its
    description; an emoji or symbol before it is decoration ("1. 🕐 **T**")."""
    if symbols := _SYMBOLS_FIRST.match(body):
        body = body[symbols.end() :]
    if bracketed := _BRACKET_LABEL.match(body):
        return clean_title(bracketed.group(1), whole=True)
    label = _emphasis_label(body)
    return clean_title(body) if label is None else clean_title(label, whole=True)


def parse_ordinal(line: str) -> tuple[int, str, str] | None:
    """(number, title, kind) of a line numbered by an ordinal word (``_ORDINAL``, or a sentence: "The first step is
    to T."; kind ""), a fraction ("2/5 T", kind "/5"), "No. 2 T" (kind "no") or a bare number ("2 T", kind "bare");
    the number is 0 for "Finally" and "Lastly" (the next one, and the last), -1 for "The next step is ..." (the next
    one). The title is the first sentence, with a capital ("First, keep a schedule. It helps." gives "Keep a
    schedule"); an emphasis opened before the word holds the title ("**First, keep it.** Text")."""
    s = line.strip()
    if sentence := _ORDINAL_SENTENCE.match(s):
        title = body_title(_SENTENCE.split(s[sentence.end() :], maxsplit=1)[0])
        title = title[:1].upper() + title[1:]
        word = sentence.group(1).lower()
        return (-1 if word == "next" else _ORDINAL_NUMBERS.get(word, 0), title, "") if title else None
    if no := _NO_NUMBER.match(s):
        title = body_title(s[no.end() :])
        return (int(no.group(2)), title[:1].upper() + title[1:], "no") if title else None
    if bare := _BARE_NUMBER.match(s):
        title = body_title(s[bare.end() :])
        return (int(bare.group(1)), title, "bare") if title else None
    m = _ORDINAL.match(s) or _FRACTION.match(s)
    if m is None or (m.re is _FRACTION and not 0 < int(m.group(2)) <= int(m.group(3))):
        return None
    mark, rest = m.group(1), _SENTENCE.split(s[m.end() :], maxsplit=1)[0]
    if mark and mark not in s[m.end(1) : m.end()]:
        close = rest.find(mark)
        title = clean_title(rest if close < 0 else rest[:close], whole=True)
    else:
        title = body_title(rest)
    title = title[:1].upper() + title[1:]
    if m.re is _FRACTION:
        return (int(m.group(2)), title, "/" + m.group(3)) if title else None
    word, digits = m.group(2) or m.group(4), m.group(3)
    number = _ORDINAL_NUMBERS[" ".join(word.lower().split())] if word else int(digits)
    return (number, title, "") if title else None


def parse_item(line: str) -> tuple[str, str, str] | None:
    """(kind, title, family) of a list line, else None; ``family`` is "bracket" for "[1] T" (a references list
    is numbered that way: the parser takes such lines only where the list itself is), "keyword" for "Step 1: T",
    "dash" for "- 1. T", or another of ``_family`` (numbered lines of another family under an item are its
    sub-items: "1." under "Step 1:" or "一、", "(1)" under "1.")."""
    s = line.strip()
    if _NUMBER_ALONE.fullmatch(s):
        return "num", "", ""
    if (xml := XML_ITEM.fullmatch(s)) and xml.group(2).strip():
        return "num", body_title(_HTML_ANY.sub(" ", _HTML_STRONG.sub("**", xml.group(2)))), "xml"
    heading = _HEADING.match(s)
    if heading:
        s = _HEADING_CLOSE.sub("", s[heading.end() :])
    bulleted = None if heading else _DECORATION.match(s)
    unbulleted = s[bulleted.end() :] if bulleted else ""
    dash = False
    if bulleted and (bold := _EMPHASIS.match(unbulleted)) and _NUMBER.match(unbulleted[bold.end() :].lstrip()):
        s, dash = unbulleted, s[0] in "-*•+"  # "- **1. T**": a bullet before a bold number (as "- 1. T")
    opener = _EMPHASIS.match(s)
    mark = opener.group() if opener else ""
    rest = s[len(mark) :].lstrip()
    decoration = _DECORATION.match(rest)
    if decoration and _NUMBER.match(rest[decoration.end() :]):
        rest, dash = rest[decoration.end() :], rest[0] in "-*•+"
    marker = _NUMBER.match(rest) or _KEYWORD.match(rest)
    if marker is None:
        bullet = None if heading or mark else _BULLET.match(s)
        if bullet is None:
            return None
        body = s[bullet.end() :].strip()
        if _YAML_NUMBER.fullmatch(body):  # "- id: 1": a YAML map whose title is on a line under it
            return "num", "", ""
        return "bullet", _bullet_title(body), ""
    family = "dash" if dash else "keyword" if marker.re is _KEYWORD else _family(marker.group())
    if mark and mark in marker.group():  # "**1**. Title": the emphasis closed inside the marker
        mark = ""
    body = rest[marker.end() :].strip()
    if _HASH_SENTENCE.match(marker.group()) and _SENTENCE_ITEM.fullmatch(body) and not _TITLE_END.search(body):
        return None  # "#1 priority is rest.": a sentence that starts with a rank, not a point
    if (family in ("bracket", "super") and _CITATION.search(body)) or _URL.fullmatch(body):
        return None  # a reference, not a point
    if mark and body.startswith(mark):  # "**1.** Title": the emphasis held only the number
        body = body[len(mark) :].strip()
    elif mark:  # "**1. Title**: description": the emphasis opened before the number holds the title
        close = body.find(mark)
        return "num", clean_title(body) if close < 0 else clean_title(body[:close], whole=True), family
    inner = _HEADING.match(body)  # "1. ### Title"
    return "num", body_title(body[inner.end() :] if inner else body), family


def yaml_title(line: str) -> str | None:
    """The value of a YAML map's title key ("title: T", "name: 'T'"), else None."""
    yaml = _YAML_TITLE.fullmatch(line)
    return clean_title(yaml.group(1), whole=True) if yaml else None


def definition_term(previous: str | None, line: str) -> str | None:
    """The term of a definition list's entry (a line of text, then its definition on a line that starts with ": ",
    as markdown extra and pandoc write one), when ``line`` is that definition and ``previous`` the text above."""
    return (body_title(previous) or None) if previous and _DEFINITION.match(line) else None


def _bullet_title(body: str) -> str:
    """A bullet's title: a keyword label's text ("- **Step 1:** T", "🔹 Tip 2: T" give "T", not "Step 1"), a YAML
    map's title ("- title: T"), else the body's title."""
    if (yaml := yaml_title(body)) is not None:
        return yaml
    opener = _EMPHASIS.match(body)
    rest = body[opener.end() :] if opener else body
    if _KEYWORD.match(rest):
        item = parse_item(body)
        if item is not None and item[1]:
            return item[1]
    return body_title(body)


def _family(marker: str) -> str:
    """The family of a numbering marker: "bracket" ("[1]"), "paren" ("(1)", "（1）", "⑴"), "han" ("一、", "第一，"),
    "hanparen" ("（一）"), "roman" ("II.": an outline's "1." under it is a sub-item), else "" ("1." "1)" "①" ...)."""
    if marker.startswith("["):
        return "bracket"
    if marker[0] in _SUPERSCRIPTS:
        return "super"
    if _ROMAN_MARKER.fullmatch(marker):
        return "roman"
    han = _HAN_START.match(marker)
    if han:
        return "hanparen" if han.group(1) else "han"
    return "paren" if marker[0] in "(\uff08" or "\u2474" <= marker[0] <= "\u2487" else ""


def parse_line(line: str) -> tuple[str, str] | None:
    """Return (kind, title) for a numbered ("num") or bulleted ("bullet") line, else None.

    Numbered: "1. T", "1) T", "1: T", "(1) T", "1/ T", "[1] T", "IV. T", "1️⃣ T", "Step 1: T" (also
    Point/Tip/Part/Section/Day/...), after an optional "#" heading, with emphasis around the number, the title
    or both ("**1.** T", "**1. T**", "1. **T**: d"). The title is what ``clean_title`` keeps; a bold label
    ("**T**: d", "**T.** D") is the title.
    """
    item = parse_item(line)
    return None if item is None else (item[0], item[1])


def parse_heading(line: str) -> tuple[int, str] | None:
    """(level, title) of an unnumbered heading or bold label line; level 7 is a bold label, 8 a plain label of a
    few words ("Pros:", heading its bullets). None for a lead-in ("**Skeleton:**", "## Outline", "Here are some
    tips:") or a line that only starts with a bold word."""
    m = _LABEL_LINE.match(line.strip())
    if m is None:
        return None
    if m.group(1):
        level, raw, after = len(m.group(1)), _HEADING_CLOSE.sub("", m.group(2)), ""
    elif m.group(6):  # up to five words, the first capitalised, no digits or code ("else:", "def f(x):")
        level, raw, after = 8, m.group(6) + ":", ""
    else:
        level, raw, after = 7, m.group(4), m.group(5).strip()
        if _LETTER.fullmatch(raw):  # "**B.** Sleep": the emphasis held only the letter
            raw, after = after, ""
        if after and after[0] not in _SEPARATORS and not after[0].isupper():
            return None
    if not after.lstrip(":").strip() and (raw.rstrip().endswith(":") or after.startswith(":")) and _LEAD_IN.search(raw):
        return None  # "**Here are the tips:**" leads in to what follows ("**Pros:**" heads its bullets)
    letter = _LETTER.match(raw) if level < 8 else None
    title = clean_title(raw[letter.end() :] if letter else raw)
    return (level, title) if title and not _GENERIC.fullmatch(title) else None


def end_of_turn(line: str) -> int | None:
    """Where an end-of-turn token written out as text starts in ``line``, if one does: nothing after it is the
    answer. ("</s>" after an "<s>" closes a strikethrough.)"""
    m = _END_OF_TURN.search(line)
    if m is None or (m.group() == "</s>" and "<s>" in line[: m.start()]):
        return None
    return m.start()


def inline_items(line: str) -> list[str]:
    """A numbered line that holds the next items too ("1. A 2. B 3. C": a list written on one line; also after
    a lead-in that ends with a colon, "Tips: 1. A 2. B 3. C"): one piece per item (indented as the line) and one
    for the lead-in, when at least two more follow the first in order, numbered the same way; else the line.
    ("1. Read chapter 2. Then rest" stays one item: one number alone may be part of a title.)"""
    first = _INLINE_FIRST.match(line) or _INLINE_AFTER_COLON.search(line)
    if first is None:
        return [line]
    number, mark = int(first.group(1)), first.group(2)
    cuts: list[int] = []
    for m in _INLINE_NEXT.finditer(line, first.end()):
        if m.group(2) == mark and int(m.group(1)) == number + 1 + len(cuts):
            cuts.append(m.start(1))
    if len(cuts) < 2:
        return [line]
    indent, head = line[: len(line) - len(line.lstrip())], line[: first.start(1)]
    bounds = [first.start(1), *cuts, len(line)]
    items = [indent + line[a:b].strip() for a, b in itertools.pairwise(bounds)]
    return [head.rstrip(), *items] if head.strip() else items


def parse_dotted(line: str) -> tuple[tuple[int, ...], str] | None:
    """(numbers, title) of an item numbered like a sub-item ("1.2 T", "**1.2 T**", "### 1.2. T"): the point of a
    list that is numbered that way from its start (the parser decides). The title is read as "1. T" would be."""
    s = line.strip()
    m = _DOTTED.match(s)
    if m is None:
        return None
    item = parse_item(s[: m.start(1)] + "1." + s[m.end(1) :])
    if item is None or item[0] != "num" or not item[1]:
        return None
    return tuple(int(n) for n in m.group(1).rstrip(".").split(".")), item[1]


def table_row_title(line: str) -> str:
    """The title of a table row ("| 1 | Title | details |"): the first cell, or the second where the first only
    numbers the row or holds no letter or digit (an emoji). HTML inside a cell ("<br>") is dropped."""
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    first = clean_title(cells[0])
    if len(cells) > 1 and (not first or _ROW_NUMBER.fullmatch(first) or not any(map(str.isalnum, first))):
        return body_title(_HTML_ANY.sub(" ", cells[1]))
    item = parse_item(cells[0])
    return item[1] if item is not None and item[0] == "num" else body_title(_HTML_ANY.sub(" ", cells[0]))


def html_piece(piece: str) -> tuple[str, str]:
    """(tag, text) of a piece of an HTML list cut at ``HTML_BREAK``: ``tag`` is "li", "/li", "ol", "/ol", "ul",
    "/ul" or "" (no list tag first); ``text`` is the rest with ``<strong>``/``<b>`` as ``**`` and other tags
    as spaces ("<p>T</p><p>D</p>" is two words)."""
    m = _HTML_TAG.match(piece)
    tag = (m.group(1) + m.group(2).lower()) if m else ""
    rest = piece[m.end() :] if m else piece
    rest = _HTML_ANY.sub(" ", _HTML_STRONG.sub("**", rest))
    return tag, " ".join(rest.split())


def is_html(piece: str) -> bool:
    return _HTML_TAG.match(piece) is not None
