"""Spoken content for the synthetic corpus: random English sentences.

The words are shipped here (no download); sentences are random word strings
with punctuation so the synthesiser makes phrase pauses and intonation.
"""

import numpy as np

_WORDS = """
a about above across act add afraid after afternoon again against age ago agree air all almost
alone along already also always among and angry animal another answer any anyone anything
apple area arm army around arrive art as ask at autumn away baby back bad bag ball bank base
basket be beach bear beautiful because become bed before begin behind believe below best better
between big bird birthday black blue board boat body book born both bottle bottom box boy bread
break bridge bright bring brother brown build burn bus business busy but buy by cake call calm
camera can capital car card care carry case cat catch cause center certain chair chance change
cheap check child choose church city class clean clear climb clock close cloud coast coffee cold
college colour come common company complete computer corner could country course cover cross
cup cut dance dark daughter day dead deal dear decide deep desk different dinner direction
doctor dog dollar door down draw dream dress drink drive during each early earth east easy eat
edge egg eight either else empty end enjoy enough enter even evening ever every example except
expect explain eye face fact fall family famous far farm fast father favourite feel few field
fifteen fight fill film final find fine finger finish fire first fish five floor flower fly
follow food foot for forest forget form forward four free fresh friend from front fruit full
game garden gate general get girl give glass go gold good great green ground group grow guess
hair half hand happen happy hard hat have he head hear heart heavy hello help her here high hill
history hold holiday home hope horse hospital hot hotel hour house how hundred idea if important
in inside island it job join journey jump just keep key kind king kitchen know lake land language
large last late laugh learn leave left leg less letter library life light like line listen
little live long look lose loud love low machine main make man many map market matter may meet
member middle might mile milk mind minute miss moment money month moon more morning most mother
mountain mouth move much music must name narrow near need never new news next nice night nine
no noise north nothing notice now number ocean of off office often old on once one only open
or orange order other our out over page paint paper parent park part party pass past pay people
perhaps person picture piece place plan plant play please pocket point poor possible power
prepare present pretty price problem public pull push put question quick quiet rain read ready
real reason red remember rest rich ride right river road rock room round run safe same sand save
say school science sea season second see seem sell send seven shape she ship shoe shop short
should show side sign simple since sing sister sit six sky sleep slow small smile snow so soft
some son song soon sound south space speak special spring square stand star start station stay
step still stone stop story street strong student study such summer sun sure sweet table take
talk tall teacher team tell ten than thank that the their then there they thing think this
thousand three through time today together tomorrow tonight too top touch towards town train
travel tree true try turn twelve twenty two under understand until up use usual valley very
village visit voice wait walk wall want warm wash watch water way we weather week welcome well
west what wheel when where which while white who why wide wife wind window winter wish with
without woman wonder wood word work world write wrong year yellow yes yesterday you young
""".split()

WORDS = tuple(dict.fromkeys(_WORDS))


def random_text(rng: np.random.Generator, n_words: int) -> str:
    """`n_words` random words as sentences of 4-14 words with commas and full stops."""
    out, sentence = [], []
    target = int(rng.integers(4, 15))
    for _ in range(n_words):
        sentence.append(WORDS[int(rng.integers(len(WORDS)))])
        if len(sentence) >= target:
            text = " ".join(sentence)
            if len(sentence) > 7 and rng.random() < 0.5:  # a comma mid-sentence
                words = text.split()
                words[len(words) // 2] += ","
                text = " ".join(words)
            out.append(text[0].upper() + text[1:] + ("?" if rng.random() < 0.1 else "."))
            sentence, target = [], int(rng.integers(4, 15))
    if sentence:
        text = " ".join(sentence)
        out.append(text[0].upper() + text[1:] + ".")
    return " ".join(out)
