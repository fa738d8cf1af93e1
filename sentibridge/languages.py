"""Language codes: the ISO 639-1 set, English names, and normalisation of what users write."""

from __future__ import annotations

# ISO 639-1 code -> English name (the full standard set).
ISO_639_1: dict[str, str] = dict(
    pair.split(":")
    for pair in (
        "aa:Afar ab:Abkhazian ae:Avestan af:Afrikaans ak:Akan am:Amharic an:Aragonese ar:Arabic "
        "as:Assamese av:Avaric ay:Aymara az:Azerbaijani ba:Bashkir be:Belarusian bg:Bulgarian "
        "bi:Bislama bm:Bambara bn:Bengali bo:Tibetan br:Breton bs:Bosnian ca:Catalan ce:Chechen "
        "ch:Chamorro co:Corsican cr:Cree cs:Czech cu:Church_Slavic cv:Chuvash cy:Welsh da:Danish "
        "de:German dv:Divehi dz:Dzongkha ee:Ewe el:Greek en:English eo:Esperanto es:Spanish "
        "et:Estonian eu:Basque fa:Persian ff:Fulah fi:Finnish fj:Fijian fo:Faroese fr:French "
        "fy:Western_Frisian ga:Irish gd:Scottish_Gaelic gl:Galician gn:Guarani gu:Gujarati gv:Manx "
        "ha:Hausa he:Hebrew hi:Hindi ho:Hiri_Motu hr:Croatian ht:Haitian hu:Hungarian hy:Armenian "
        "hz:Herero ia:Interlingua id:Indonesian ie:Interlingue ig:Igbo ii:Sichuan_Yi ik:Inupiaq "
        "io:Ido is:Icelandic it:Italian iu:Inuktitut ja:Japanese jv:Javanese ka:Georgian kg:Kongo ki:Kikuyu "
        "kj:Kuanyama kk:Kazakh kl:Kalaallisut km:Khmer kn:Kannada ko:Korean kr:Kanuri ks:Kashmiri "
        "ku:Kurdish kv:Komi kw:Cornish ky:Kyrgyz la:Latin lb:Luxembourgish lg:Ganda li:Limburgish "
        "ln:Lingala lo:Lao lt:Lithuanian lu:Luba-Katanga lv:Latvian mg:Malagasy mh:Marshallese "
        "mi:Maori mk:Macedonian ml:Malayalam mn:Mongolian mr:Marathi ms:Malay mt:Maltese my:Burmese "
        "na:Nauru nb:Norwegian_Bokmal nd:North_Ndebele ne:Nepali ng:Ndonga nl:Dutch "
        "nn:Norwegian_Nynorsk no:Norwegian nr:South_Ndebele nv:Navajo ny:Chichewa oc:Occitan "
        "oj:Ojibwa om:Oromo or:Oriya os:Ossetian pa:Punjabi pi:Pali pl:Polish ps:Pashto "
        "pt:Portuguese qu:Quechua rm:Romansh rn:Rundi ro:Romanian ru:Russian rw:Kinyarwanda "
        "sa:Sanskrit sc:Sardinian sd:Sindhi se:Northern_Sami sg:Sango si:Sinhala sk:Slovak "
        "sl:Slovenian sm:Samoan sn:Shona so:Somali sq:Albanian sr:Serbian ss:Swati st:Southern_Sotho "
        "su:Sundanese sv:Swedish sw:Swahili ta:Tamil te:Telugu tg:Tajik th:Thai ti:Tigrinya "
        "tk:Turkmen tl:Tagalog tn:Tswana to:Tonga tr:Turkish ts:Tsonga tt:Tatar tw:Twi ty:Tahitian "
        "ug:Uyghur uk:Ukrainian ur:Urdu uz:Uzbek ve:Venda vi:Vietnamese vo:Volapuk wa:Walloon "
        "wo:Wolof xh:Xhosa yi:Yiddish yo:Yoruba za:Zhuang zh:Chinese zu:Zulu"
    ).split()
)
ISO_639_1 = {code: name.replace("_", " ") for code, name in ISO_639_1.items()}

_BY_NAME: dict[str, str] = {name.lower(): code for code, name in ISO_639_1.items()}
# Spellings seen in dataset folder names and tags that are not the plain English name.
_BY_NAME.update(
    {
        "farsi": "fa",
        "mandarin": "zh",
        "chinese simplified": "zh",
        "brazilian": "pt",
        "portugese": "pt",
        "castilian": "es",
        "filipino": "tl",
        "bokmal": "nb",
        "flemish": "nl",
        "moldovan": "ro",
    }
)


def normalise_language(value: object) -> str:
    """Return the ISO 639-1 code for ``"arabic"``, ``"AR"``, ``"pt-BR"``, ``"en_US"``...

    Unknown values come back lower-cased and stripped, so validation can quarantine them
    and show the user what was written.
    """
    if value is None:
        return ""
    raw = str(value).strip().lower()
    if raw in ISO_639_1:
        return raw
    base = raw.replace("-", "_").split("_")[0]
    if base in ISO_639_1:
        return base
    spaced = raw.replace("_", " ")
    return _BY_NAME.get(spaced, _BY_NAME.get(spaced.replace("-", " "), _BY_NAME.get(base, raw)))


def is_language_code(code: object) -> bool:
    """Whether ``code`` is a language code as sentibridge stores it: ISO 639-1, lower case.

    The one rule for a valid code, for training rows and prediction input alike; pass what
    users write through ``normalise_language`` first (``"pt-BR"`` and ``"Arabic"`` are not codes).
    """
    return isinstance(code, str) and code in ISO_639_1


def language_name(code: object) -> str | None:
    """English name of a code (``"ar"`` -> ``"Arabic"``), for prompts and reports.

    None when there is no code (None, NaN, blank); an unknown code comes back as written
    (stripped, lower case), so a prompt still names what the data said.
    """
    if not isinstance(code, str) or not code.strip():  # pandas' missing values are not str
        return None
    key = code.strip().lower()
    return ISO_639_1.get(key, key)
