"""A labelled synthetic world to measure identity resolution, and its metrics.

``generate_world(n, seed=…)`` makes the records several systems (CRM, ERP, help desk,
marketing, web shop) would hold about the same people and companies, with the truth kept
aside. Each copy of a customer is corrupted the way real feeds are: typos, nicknames,
swapped first and last names, missing fields, other e-mail addresses, national phone
formats, an old address, day and month transposed, a mistyped year. The world also holds
the cases that decide precision: namesakes with other birth dates, households sharing an
address and a landline (twins share a birth date too, fathers and sons a name), colleagues
writing the same info@ address, placeholders, companies with one name in several
countries, and everyone sharing the big free-mail domains.

Deterministic per seed. ``pairwise_metrics`` scores clusters against the truth over
pairs; ``deterministic_baseline`` is what exact e-mail/phone/tax-id linking alone gives.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import normalize


def _words(text: str) -> list[str]:
    return text.split()


def _parts(text: str) -> list[str]:
    return text.split("|")


FIRST_NAMES = {
    "en": _words(
        "james john robert michael william david richard joseph thomas charles christopher "
        "daniel matthew anthony mark donald steven paul andrew joshua kenneth kevin brian george "
        "timothy ronald edward jason jeffrey ryan jacob gary nicholas eric jonathan stephen "
        "larry justin scott brandon benjamin samuel gregory alexander frank patrick raymond jack "
        "dennis jerry tyler aaron henry douglas peter adam nathan zachary walter harold kyle "
        "carl arthur gerald roger keith jeremy terry lawrence sean christian albert joe ethan "
        "austin jesse willie billy bryan bruce jordan ralph roy noah dylan eugene wayne alan "
        "juan louis russell gabriel randy philip harry vincent bobby johnny logan mary patricia "
        "jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty margaret "
        "sandra ashley kimberly emily donna michelle carol amanda dorothy melissa deborah "
        "stephanie rebecca sharon laura cynthia kathleen amy angela shirley anna brenda pamela "
        "emma nicole helen samantha katherine christine debra rachel carolyn janet catherine "
        "maria heather diane ruth julie olivia joyce virginia victoria kelly lauren christina "
        "joan evelyn judith megan andrea cheryl hannah jacqueline martha gloria teresa ann sara "
        "madison frances kathryn janice jean abigail alice judy sophia grace denise amber doris "
        "marilyn danielle beverly isabella theresa diana natalie brittany charlotte marie kayla "
        "alexis lori"
    ),
    "de": _words(
        "thomas michael andreas stefan peter christian klaus wolfgang jurgen frank markus uwe "
        "matthias alexander bernd sebastian tobias jan dieter daniel martin florian heinrich "
        "johannes joachim friedrich wilhelm ulrich maria ursula monika petra sabine renate helga "
        "karin brigitte ingrid andrea claudia susanne gabriele birgit christine julia anna "
        "katharina elisabeth margarete johanna franziska magdalena lena laura sarah"
    ),
    "fr": _words(
        "jean pierre michel philippe alain nicolas christophe patrick daniel bernard frederic "
        "sebastien francois laurent eric guillaume jacques emmanuel dominique alexandre thomas "
        "marie nathalie isabelle sylvie catherine francoise valerie christine monique sophie "
        "stephanie sandrine veronique genevieve marguerite camille julie celine chantal"
    ),
    "es": _words(
        "antonio jose manuel francisco david juan javier daniel carlos jesus alejandro miguel "
        "rafael pedro pablo angel fernando luis sergio jorge alberto enrique roberto eduardo "
        "ignacio guillermo maria carmen ana isabel laura dolores pilar teresa rosa cristina "
        "marta lucia mercedes elena concepcion rosario montserrat guadalupe josefa"
    ),
    "nl": _words(
        "jan johannes peter hendrik cornelis willem gerrit pieter jacobus dirk thomas daan sem "
        "lucas maria anna johanna cornelia elisabeth wilhelmina hendrika emma julia sophie lotte "
        "sanne"
    ),
}
LAST_NAMES = {
    "en": _words(
        "smith johnson williams brown jones miller davis wilson anderson taylor thomas moore "
        "martin jackson thompson white harris clark lewis robinson walker young allen king "
        "wright scott green baker adams nelson hill campbell mitchell roberts carter phillips "
        "evans turner parker collins edwards stewart morris murphy cook rogers morgan cooper "
        "peterson bailey reed kelly howard cox ward richardson watson brooks wood james bennett "
        "gray hughes price sanders myers long ross foster powell jenkins perry russell sullivan "
        "bell coleman butler henderson barnes fisher henry graham reynolds hamilton wallace west "
        "cole hayes gibson bryant ellis stevens murray ford marshall owens mcdonald harrison "
        "kennedy wells alexander dixon palmer hunt"
    ),
    "de": _words(
        "muller schmidt schneider fischer weber meyer wagner becker schulz hoffmann schafer koch "
        "bauer richter klein wolf schroder neumann schwarz zimmermann braun kruger hofmann "
        "hartmann lange schmitt werner schmitz krause meier lehmann schmid schulze maier kohler "
        "herrmann konig walter mayer huber kaiser fuchs peters lang scholz moller weiss jung "
        "hahn"
    ),
    "fr": _words(
        "martin bernard dubois thomas robert richard petit durand leroy moreau simon laurent "
        "lefebvre michel garcia david bertrand roux vincent fournier morel girard andre lefevre "
        "mercier dupont lambert bonnet francois martinez legrand garnier faure rousseau blanc "
        "guerin muller henry roussel nicolas perrin morin mathieu"
    ),
    "es": _words(
        "garcia rodriguez gonzalez fernandez lopez martinez sanchez perez gomez martin jimenez "
        "ruiz hernandez diaz moreno alvarez munoz romero alonso gutierrez navarro torres "
        "dominguez vazquez ramos gil ramirez serrano blanco molina morales suarez ortega delgado "
        "castro ortiz rubio marin sanz iglesias"
    ),
    "nl": _parts(
        "de jong|jansen|de vries|van den berg|van dijk|bakker|janssen|visser|smit|meijer|de boer|"
        "mulder|de groot|bos|vos|peters|hendriks|van leeuwen|dekker|brouwer|de wit|dijkstra|smits|"
        "de graaf|van der meer"
    ),
}
_SYLLABLES_A = _words(
    "ab al an ar bal bar bel ber bor bran bro cal car cas cor dal dan del dor el en er fal fen "
    "gal gar gor hal har hel hol jan kal kar kel kor lan lar lem lin lor mal mar mel mor nal nor "
    "ol or pal par pel quin ral ren ros sal san sel sor tal tan tor val var vel wal war wel yar "
    "zab zel zor"
)
_SYLLABLES_B = _words(
    "a e i o u ra re ri ro ru la le li lo na ne ni no ma me mi mo ta te ti to ka ke ki ko sa se "
    "si so va ve vi"
)
_SYLLABLES_C = _words(
    "n r s t l k m x th ck nd rt ld ng sk ski sky son sen man mann berg stein ez es os ini ino "
    "elli ard ault ier ek ik ov ova escu ian yan"
)

COUNTRIES = {
    "US": (0.40, "en"),
    "GB": (0.20, "en"),
    "DE": (0.14, "de"),
    "FR": (0.10, "fr"),
    "NL": (0.07, "nl"),
    "ES": (0.09, "es"),
}
CITIES = {
    "US": [
        ("New York", "100"),
        ("Los Angeles", "900"),
        ("Chicago", "606"),
        ("Houston", "770"),
        ("Phoenix", "850"),
        ("Philadelphia", "191"),
        ("San Antonio", "782"),
        ("San Diego", "921"),
        ("Dallas", "752"),
        ("Austin", "787"),
        ("Boston", "021"),
        ("Seattle", "981"),
        ("Denver", "802"),
        ("Portland", "972"),
        ("Atlanta", "303"),
        ("Miami", "331"),
        ("St. Louis", "631"),
        ("Minneapolis", "554"),
        ("Springfield", "627"),
        ("Columbus", "432"),
    ],
    "GB": [
        ("London", "SW1A"),
        ("London", "E14"),
        ("London", "NW3"),
        ("Manchester", "M1"),
        ("Birmingham", "B2"),
        ("Leeds", "LS1"),
        ("Glasgow", "G1"),
        ("Liverpool", "L1"),
        ("Bristol", "BS1"),
        ("Sheffield", "S1"),
        ("Edinburgh", "EH1"),
        ("Cardiff", "CF10"),
        ("Oxford", "OX1"),
        ("Cambridge", "CB2"),
    ],
    "DE": [
        ("Berlin", "101"),
        ("Hamburg", "201"),
        ("München", "803"),
        ("Köln", "506"),
        ("Frankfurt am Main", "603"),
        ("Stuttgart", "701"),
        ("Düsseldorf", "402"),
        ("Leipzig", "041"),
        ("Dresden", "010"),
        ("Hannover", "301"),
    ],
    "FR": [
        ("Paris", "750"),
        ("Marseille", "130"),
        ("Lyon", "690"),
        ("Toulouse", "310"),
        ("Nice", "060"),
        ("Nantes", "440"),
        ("Strasbourg", "670"),
        ("Bordeaux", "330"),
        ("Lille", "590"),
    ],
    "NL": [
        ("Amsterdam", "10"),
        ("Rotterdam", "30"),
        ("Den Haag", "25"),
        ("Utrecht", "35"),
        ("Eindhoven", "56"),
        ("Groningen", "97"),
    ],
    "ES": [
        ("Madrid", "280"),
        ("Barcelona", "080"),
        ("Valencia", "460"),
        ("Sevilla", "410"),
        ("Zaragoza", "500"),
        ("Málaga", "290"),
        ("Bilbao", "480"),
    ],
}
STREETS = {
    "en": _words(
        "Main Oak Maple Cedar Pine Elm Washington Lake Hill Park Church High Station Mill "
        "Victoria King Queen Green Bridge North South West Chestnut Walnut Highland Sunset River "
        "Spring Forest Meadow Willow Cherry Jackson Lincoln Franklin Madison"
    ),
    "de": _words(
        "Haupt Bahnhof Schul Garten Dorf Berg Linden Kirch Wald Ring Birken Feld Mühlen Goethe "
        "Schiller Eichen Post Wiesen Sonnen Buchen"
    ),
    "fr": _parts(
        "de la Paix|Victor Hugo|de la République|Pasteur|Jean Jaurès|Gambetta|du Moulin|"
        "de l'Église|des Écoles|Voltaire|Nationale|de la Gare|du Château|Émile Zola"
    ),
    "es": _parts(
        "Mayor|Real|de la Iglesia|del Sol|Nueva|de Cervantes|de Alcalá|Gran Vía|de la Paz|"
        "del Carmen|San José|de Goya"
    ),
    "nl": _words(
        "Kerk Dorps School Molen Prinsen Keizers Heren Linden Wilhelmina Juliana Beatrix "
        "Stations Markt"
    ),
}
FREE_MAIL = {
    "US": ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com", "icloud.com"],
    "GB": ["gmail.com", "hotmail.co.uk", "yahoo.co.uk", "outlook.com", "btinternet.com"],
    "DE": ["gmail.com", "gmx.de", "web.de", "t-online.de", "outlook.com"],
    "FR": ["gmail.com", "orange.fr", "free.fr", "hotmail.fr", "laposte.net"],
    "NL": ["gmail.com", "hotmail.com", "outlook.com", "ziggo.nl", "kpnmail.nl"],
    "ES": ["gmail.com", "hotmail.com", "yahoo.es", "outlook.com", "telefonica.net"],
}
SYSTEMS = ("crm", "erp", "helpdesk", "marketing", "shop")
# Which fields each system keeps (probability the field is filled when the customer has it).
SYSTEM_FIELDS = {
    "crm": {"name": 1.0, "email": 0.95, "phone": 0.8, "address": 0.6, "dob": 0.4, "nid": 0.0},
    "erp": {"name": 1.0, "email": 0.7, "phone": 0.7, "address": 0.98, "dob": 0.65, "nid": 0.35},
    "helpdesk": {"name": 0.95, "email": 1.0, "phone": 0.6, "address": 0.1, "dob": 0.1, "nid": 0},
    "marketing": {"name": 0.85, "email": 1.0, "phone": 0.2, "address": 0.5, "dob": 0.35, "nid": 0},
    "shop": {"name": 1.0, "email": 0.98, "phone": 0.75, "address": 0.95, "dob": 0.7, "nid": 0.0},
}
ORG_WORDS = _words(
    "acme globex initech umbrella stark wayne cyberdyne tyrell wonka soylent hooli vandelay "
    "gringotts oscorp massive dynamic aperture blue sun northwind contoso fabrikam tailspin "
    "adventure litware proseware woodgrove alpine fourth coffee margie wingtip lucerne datum "
    "trey humongous consolidated nod vertex apex summit pinnacle horizon meridian atlas orion "
    "nova polaris zenith keystone cornerstone bluewater redwood silverline evergreen ironbridge "
    "lakeside riverside harbor granite cobalt quantum nimbus"
)
ORG_INDUSTRY = _words(
    "Logistics Manufacturing Technologies Services Consulting Holdings Systems Foods Engineering "
    "Trading Solutions Industries International Partners Labs Group Brothers Associates "
    "Management Software"
)
ORG_ABBREV = {
    "Manufacturing": "Mfg",
    "Technologies": "Tech",
    "Services": "Svcs",
    "International": "Intl",
    "Holdings": "Hldgs",
    "Systems": "Sys",
    "Brothers": "Bros",
    "Associates": "Assoc",
    "Management": "Mgmt",
    "Industries": "Inds",
}
LEGAL_FORMS = {
    "US": ["Inc", "Inc.", "Incorporated", "LLC", "Corp", "Corporation", ""],
    "GB": ["Ltd", "Limited", "PLC", "Ltd."],
    "DE": ["GmbH", "AG", "GmbH & Co. KG"],
    "FR": ["SA", "S.A.", "SAS", "SARL"],
    "NL": ["B.V.", "BV", "N.V."],
    "ES": ["S.L.", "SL", "S.A."],
}
_TLD = {"US": "com", "GB": "co.uk", "DE": "de", "FR": "fr", "NL": "nl", "ES": "es"}


@dataclass
class World:
    """Records as source systems hold them, and (aside) who each one really is."""

    records: list[dict[str, Any]]
    truth: np.ndarray  # true entity id per record
    meta: dict[str, Any] = field(default_factory=dict)


def _zipf_weights(n: int, s: float = 1.0) -> list[float]:
    return [1.0 / (k + 1) ** s for k in range(n)]


class _Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.first_w = {k: _zipf_weights(len(v), 0.9) for k, v in FIRST_NAMES.items()}
        self.last_w = {k: _zipf_weights(len(v), 0.8) for k, v in LAST_NAMES.items()}
        self.countries = list(COUNTRIES)
        self.country_w = [COUNTRIES[c][0] for c in self.countries]
        self.emails: set[str] = set()
        self.phones: set[str] = set()
        self.companies: list[tuple[str, str]] = []  # (domain, country)

    # -- atoms ---------------------------------------------------------------------------

    def country(self) -> str:
        return self.r.choices(self.countries, self.country_w)[0]

    def first(self, lang: str) -> str:
        return self.r.choices(FIRST_NAMES[lang], self.first_w[lang])[0].title()

    def last(self, lang: str) -> str:
        r = self.r
        if r.random() < 0.45:
            name = r.choice(_SYLLABLES_A) + r.choice(_SYLLABLES_B) + r.choice(_SYLLABLES_C)
            if r.random() < 0.3:
                name = r.choice(_SYLLABLES_A) + name
            return name.title()
        name = r.choices(LAST_NAMES[lang], self.last_w[lang])[0]
        return " ".join(w if w in ("de", "van", "den", "der") else w.title() for w in name.split())

    def dob(self) -> tuple[int, int, int]:
        r = self.r
        return r.randint(1940, 2006), r.randint(1, 12), r.randint(1, 28)

    def phone(self, cc: str, mobile: bool = True) -> str:
        r = self.r
        while True:
            if cc == "US":
                number = f"+1{r.randint(201, 989)}{r.randint(200, 999)}{r.randint(0, 9999):04d}"
            elif cc == "GB":
                prefix = "7" if mobile else r.choice(["20", "161", "121", "113", "141"])
                number = f"+44{prefix}{r.randint(10**8, 10**9 - 1)}"[:13]
            elif cc == "DE":
                prefix = (
                    r.choice(["151", "160", "170", "176"])
                    if mobile
                    else r.choice(["30", "40", "89", "221", "69"])
                )
                number = f"+49{prefix}{r.randint(10**6, 10**8 - 1)}"
            elif cc == "FR":
                number = f"+33{r.choice('67') if mobile else r.choice('12345')}" + (
                    f"{r.randint(0, 10**8 - 1):08d}"
                )
            elif cc == "NL":
                number = (
                    f"+31{'6' if mobile else r.choice(['20', '10', '30'])}"
                    + (f"{r.randint(0, 10**8 - 1):08d}")[: 8 if mobile else 7]
                )
            else:
                number = f"+34{r.choice('67') if mobile else '9'}{r.randint(0, 10**8 - 1):08d}"
            if number not in self.phones:
                self.phones.add(number)
                return number

    def national_format(self, e164: str, cc: str) -> str:
        """The number as a person would type it in the country."""
        if cc == "US":
            d = e164[2:]
            return f"({d[:3]}) {d[3:6]}-{d[6:]}"
        code = {"GB": 2, "DE": 2, "FR": 2, "NL": 2, "ES": 2}[cc]
        national = e164[1 + code :]
        if cc == "ES":
            return f"{national[:3]} {national[3:6]} {national[6:]}"
        return "0" + national[:3] + " " + national[3:]

    def address(self, cc: str, lang: str) -> dict[str, str]:
        r = self.r
        city, base = r.choice(CITIES[cc])
        street = r.choice(STREETS[lang])
        number = r.randint(1, 250)
        unit = r.randint(1, 30) if r.random() < 0.25 else 0
        if cc in ("US", "GB"):
            kind = r.choice(["Street", "Avenue", "Road", "Lane", "Drive"])
            line = f"{number} {street} {kind}" + (f" Apt {unit}" if unit else "")
        elif cc == "DE":
            line = f"{street}straße {number}" + (f" Whg {unit}" if unit else "")
        elif cc == "NL":
            line = f"{street}straat {number}" + (f"-{unit}" if unit else "")
        elif cc == "FR":
            line = f"{number} rue {street}"
        else:
            line = f"Calle {street} {number}" + (f", piso {unit}" if unit else "")
        if cc == "US":
            postal = f"{base}{r.randint(0, 99):02d}"
        elif cc == "GB":
            postal = f"{base} {r.randint(1, 9)}{r.choice('ABDEFGHJLNPQRSTUWXYZ')}" + r.choice(
                "ABDEFGHJLNPQRSTUWXYZ"
            )
        elif cc == "NL":
            postal = f"{base}{r.randint(10, 99)} {r.choice('ABCDEFGHJKLMNPRSTVWXZ')}" + r.choice(
                "ABCDEFGHJKLMNPRSTVWXZ"
            )
        else:
            postal = f"{base}{r.randint(0, 99):02d}"
        return {"address_line1": line, "city": city, "postal_code": postal, "country": cc}

    def email(self, first: str, last: str, domain: str) -> str:
        r = self.r
        f, lname = _ascii(first).lower(), _ascii(last).lower().replace(" ", "")
        for attempt in range(20):
            pattern = r.randrange(6)
            if pattern == 0:
                local = f"{f}.{lname}"
            elif pattern == 1:
                local = f"{f}{lname}{r.randint(1, 99)}"
            elif pattern == 2:
                local = f"{f[0]}{lname}"
            elif pattern == 3:
                local = f"{f}_{lname}{r.randint(60, 99)}"
            elif pattern == 4:
                local = f"{lname}.{f}"
            else:
                local = f"{f}{r.randint(100, 9999)}"
            if attempt > 3:
                local += str(r.randint(1, 999))
            address = f"{local}@{domain}"
            if address not in self.emails:
                self.emails.add(address)
                return address
        raise RuntimeError("could not make a unique e-mail")

    # -- corruptions ---------------------------------------------------------------------

    def typo(self, text: str) -> str:
        r = self.r
        if len(text) < 3:
            return text
        i = r.randrange(1, len(text))
        op = r.randrange(4)
        letters = "abcdefghijklmnopqrstuvwxyz"
        if op == 0:
            return text[:i] + text[i + 1 :]
        if op == 1:
            return text[:i] + r.choice(letters) + text[i:]
        if op == 2 and i < len(text) - 1:
            return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        return text[:i] + r.choice(letters) + text[i + 1 :]

    def nickname(self, first: str) -> str:
        from .nicknames import NICKNAMES

        shorts = NICKNAMES.get(_ascii(first).lower())
        return self.r.choice(shorts).title() if shorts else first

    def email_variant(self, address: str) -> str:
        """The address as one system has it: case, a +tag, Gmail dots, now and then a typo."""
        r = self.r
        local, _, domain = address.partition("@")
        roll = r.random()
        if roll < 0.25:
            return address.upper() if r.random() < 0.2 else address.title()
        if roll < 0.35 and domain in ("gmail.com", "outlook.com"):
            return f"{local}+{r.choice(['news', 'shop', 'crm', 'x'])}@{domain}"
        if roll < 0.40 and domain == "gmail.com" and "." not in local and len(local) > 4:
            return f"{local[:3]}.{local[3:]}@{domain}"
        if 0.40 <= roll < 0.415:
            return f"{self.typo(local)}@{domain}"
        return address


def _ascii(text: str) -> str:
    from .normalize import strip_accents

    return strip_accents(text).replace("ß", "ss")


def _iso(y: int, m: int, d: int) -> str:
    return f"{y:04d}-{m:02d}-{d:02d}"


def _person_entities(g: _Gen, n_entities: int) -> list[dict[str, Any]]:
    """People, grouped in households; with namesakes, twins and juniors."""
    r = g.r
    people: list[dict[str, Any]] = []
    while len(people) < n_entities:
        cc = g.country()
        lang = COUNTRIES[cc][1]
        home = g.address(cc, lang)
        landline = g.phone(cc, mobile=False) if r.random() < 0.5 else ""
        size = r.choices([1, 2, 3, 4, 5], [0.55, 0.25, 0.1, 0.07, 0.03])[0]
        family = g.last(lang)
        family_email = ""
        if size > 1 and r.random() < 0.08:
            family_email = g.email(family, "family", r.choice(FREE_MAIL[cc]))
        twins = size >= 3 and r.random() < 0.05
        junior = size >= 3 and r.random() < 0.03
        taken: set[str] = set()  # given names (and what they are short for) in the family
        parent_dob = g.dob()
        for k in range(size):
            last = family if (k == 0 or r.random() < 0.9) else g.last(lang)
            first = g.first(lang)
            for _ in range(20):  # parents do not give two children one name
                if not (normalize.name_forms(first) & taken):
                    break
                first = g.first(lang)
            dob = (
                g.dob()
                if k == 0
                else (
                    (parent_dob[0] + r.randint(20, 40), r.randint(1, 12), r.randint(1, 28))
                    if k >= 2
                    else (parent_dob[0] + r.randint(-5, 5), r.randint(1, 12), r.randint(1, 28))
                )
            )
            if k == 0:
                parent_dob = dob
            if twins and k == 3:
                dob = people[-1]["dob"]
            if junior and k == 2:
                first = people[-2]["first"]  # the father's name, his son's birth date
            taken |= normalize.name_forms(first)
            dob = (min(dob[0], 2006), dob[1], dob[2])
            person = {
                "cc": cc,
                "lang": lang,
                "first": first,
                "last": last,
                "dob": dob,
                "home": home,
                "old_home": g.address(cc, lang) if r.random() < 0.25 else None,
                "mobile": g.phone(cc) if r.random() < 0.9 else "",
                "landline": landline,
                "family_email": family_email,
                "nid": f"{r.randint(10**8, 10**9 - 1)}" if r.random() < 0.5 else "",
            }
            person["email"] = g.email(first, last, r.choice(FREE_MAIL[cc]))
            if g.companies and r.random() < 0.35:
                domain, _ = r.choice(g.companies)
                person["work_email"] = g.email(first, last, domain)
                person["role_email"] = f"info@{domain}" if r.random() < 0.03 else ""
            person["primary_email"] = (
                person["work_email"]
                if person.get("work_email") and r.random() < 0.3
                else person["email"]
            )
            people.append(person)
            if len(people) >= n_entities:
                break
        # A namesake elsewhere: same name, other birth date, other address.
        if r.random() < 0.03 and len(people) < n_entities:
            src = people[-1]
            ns_home = g.address(src["cc"], src["lang"])
            if r.random() < 0.5:
                ns_home["city"] = src["home"]["city"]
            people.append(
                {
                    **src,
                    "dob": g.dob(),
                    "home": ns_home,
                    "old_home": None,
                    "mobile": g.phone(src["cc"]),
                    "landline": "",
                    "family_email": "",
                    "email": g.email(src["first"], src["last"], r.choice(FREE_MAIL[src["cc"]])),
                    "work_email": "",
                    "role_email": "",
                    "nid": f"{r.randint(10**8, 10**9 - 1)}" if r.random() < 0.5 else "",
                }
            )
            people[-1]["primary_email"] = people[-1]["email"]
    return people[:n_entities]


def _person_record(g: _Gen, p: dict[str, Any], system: str) -> dict[str, Any]:
    r = g.r
    keep = SYSTEM_FIELDS[system]
    rec: dict[str, Any] = {"kind": "person"}
    first, last = p["first"], p["last"]
    if r.random() < keep["name"]:
        roll = r.random()
        if roll < 0.10:
            first = g.nickname(first)
        elif roll < 0.15:
            first = g.typo(first)
        elif roll < 0.17:
            first = first[0] + ("." if r.random() < 0.5 else "")
        if r.random() < 0.05:
            last = g.typo(last)
        if r.random() < 0.015:
            first, last = last, first
        if r.random() < 0.1:
            first, last = first.upper(), last.upper()
        rec["first_name"] = first
        rec["last_name"] = last
    elif r.random() < 0.5:
        rec["first_name"] = first
    # e-mail: personal, work, the family's, or the employer's info@ box
    if r.random() < keep["email"]:
        # Most systems get the address the person gives everywhere; some get another.
        address = p["primary_email"]
        roll = r.random()
        if roll < 0.1:
            address = p.get("work_email") or p["email"]
            if address == p["primary_email"]:
                address = p["email"]
        elif roll < 0.15 and p["family_email"] and system in ("marketing", "shop"):
            address = p["family_email"]
        elif roll < 0.2 and p.get("role_email") and system in ("crm", "erp"):
            address = p["role_email"]
        rec["email"] = g.email_variant(address)
    cc = p["cc"]
    if r.random() < keep["phone"]:
        number = p["mobile"] or p["landline"]
        if p["landline"] and r.random() < 0.35:
            number = p["landline"]
        if number:
            roll = r.random()
            if roll < 0.1:
                number = g.national_format(number, cc)
            elif roll < 0.12:
                digits = list(number)
                i = r.randrange(4, len(digits))
                digits[i] = str((int(digits[i]) + 1) % 10)
                number = "".join(digits)
            rec["phone"] = number
    if r.random() < keep["address"]:
        home = p["old_home"] if p["old_home"] and r.random() < 0.35 else p["home"]
        line = home["address_line1"]
        roll = r.random()
        if roll < 0.25:
            line = (
                line.replace("Street", "St").replace("Avenue", "Ave").replace("Road", "Rd")
                .replace("Apt ", "#").replace("straße", "str.").replace("Drive", "Dr")
            )  # fmt: skip
        elif roll < 0.3:
            line = g.typo(line)
        rec["address_line1"] = line
        rec["city"] = home["city"] if r.random() > 0.03 else g.typo(home["city"])
        postal = home["postal_code"]
        if r.random() < 0.2:
            postal = postal.replace(" ", "").lower()
        if cc == "US" and r.random() < 0.1:
            postal = f"{postal}-{r.randint(1000, 9999)}"
        rec["postal_code"] = postal
        rec["country"] = cc if r.random() < 0.7 else {
            "US": "USA", "GB": "United Kingdom", "DE": "Germany", "FR": "France",
            "NL": "Netherlands", "ES": "Spain",
        }[cc]  # fmt: skip
    elif r.random() < 0.5:
        rec["country"] = cc
    if r.random() < keep["dob"]:
        y, m, d = p["dob"]
        roll = r.random()
        if roll < 0.03 and d <= 12:
            m, d = d, m
        elif roll < 0.045:
            y = y + r.choice([-1, 1])
        elif roll < 0.05:
            d = min(28, max(1, d + r.choice([-10, 10])))
        rec["birth_date"] = _iso(y, m, d)
    if p["nid"] and r.random() < keep["nid"]:
        nid = p["nid"]
        rec["national_id"] = f"{nid[:3]}-{nid[3:6]}-{nid[6:]}" if r.random() < 0.3 else nid
    # placeholders typed to get past a required field
    roll = r.random()
    if roll < 0.004:
        rec["email"] = r.choice(["test@test.com", "n/a", "none@none.com", "noemail@example.com"])
    elif roll < 0.008:
        rec["phone"] = r.choice(["0000000000", "+10000000000", "123456789", "n/a"])
    elif roll < 0.009:
        rec["first_name"] = r.choice(["Test", "Unknown", "N/A"])
    return rec


def _org_entities(g: _Gen, n_entities: int) -> list[dict[str, Any]]:
    r = g.r
    orgs: list[dict[str, Any]] = []
    used_domains: set[str] = set()
    while len(orgs) < n_entities:
        cc = g.country()
        base = " ".join(w.title() for w in r.sample(ORG_WORDS, r.choice([1, 1, 2])))
        industry = r.choice(ORG_INDUSTRY) if r.random() < 0.7 else ""
        name = f"{base} {industry}".strip()
        # The same name in other countries: different companies (hard negatives).
        countries = [cc]
        if r.random() < 0.08:
            countries += r.sample([c for c in COUNTRIES if c != cc], r.choice([1, 2]))
        for country_code in countries:
            slug = "".join(c for c in base.lower() if c.isalnum())
            domain = f"{slug}{r.randint(1, 999) if r.random() < 0.5 else ''}.{_TLD[country_code]}"
            while domain in used_domains:
                domain = f"{slug}{r.randint(1, 99999)}.{_TLD[country_code]}"
            used_domains.add(domain)
            g.companies.append((domain, country_code))
            orgs.append(
                {
                    "cc": country_code,
                    "name": name,
                    "legal": r.choice(LEGAL_FORMS[country_code]),
                    "domain": domain,
                    "tax": f"{country_code}{r.randint(10**8, 10**9 - 1)}",
                    "phone": g.phone(country_code, mobile=False),
                    "home": g.address(country_code, COUNTRIES[country_code][1]),
                }
            )
    return orgs[:n_entities]


def _org_record(g: _Gen, o: dict[str, Any], system: str) -> dict[str, Any]:
    r = g.r
    name = o["name"]
    legal = o["legal"]
    roll = r.random()
    if roll < 0.3:
        legal = r.choice(LEGAL_FORMS[o["cc"]])
    elif roll < 0.4:
        legal = ""
    words = name.split()
    if words and words[-1] in ORG_ABBREV and r.random() < 0.3:
        words[-1] = ORG_ABBREV[words[-1]]
    name = " ".join(words)
    if r.random() < 0.1:
        name = "The " + name
    if " and " in name.lower() and r.random() < 0.5:
        name = name.replace(" and ", " & ")
    if r.random() < 0.04:
        name = g.typo(name)
    if r.random() < 0.1:
        name = name.upper()
    rec: dict[str, Any] = {"kind": "organization", "name": f"{name} {legal}".strip()}
    if r.random() < 0.6:
        rec["website"] = r.choice(
            [o["domain"], f"www.{o['domain']}", f"https://www.{o['domain']}/", o["domain"].upper()]
        )
    if r.random() < 0.7:
        rec["email"] = f"{r.choice(['info', 'ap', 'billing', 'accounts', 'sales'])}@{o['domain']}"
    if r.random() < 0.6:
        rec["phone"] = o["phone"] if r.random() < 0.85 else g.national_format(o["phone"], o["cc"])
    if r.random() < (0.8 if system == "erp" else 0.3):
        tax = o["tax"]
        rec["tax_id"] = tax if r.random() < 0.6 else f"{tax[:2]} {tax[2:5]} {tax[5:]}"
    if r.random() < 0.7:
        rec.update(o["home"])
        if r.random() < 0.2:
            rec["postal_code"] = rec["postal_code"].replace(" ", "").lower()
    else:
        rec["country"] = o["cc"]
    return rec


def generate_world(
    n_records: int = 10_000, *, seed: int = 1, organization_share: float = 0.0
) -> World:
    """About ``n_records`` records of customers spread over the systems, with the truth.

    ``organization_share`` of the records are companies (the rest people). The same seed
    always gives the same world.
    """
    g = _Gen(seed)
    r = g.r
    copies = [1, 2, 3, 4, 5]
    copy_w = [0.34, 0.33, 0.2, 0.1, 0.03]
    mean_copies = sum(c * w for c, w in zip(copies, copy_w, strict=True))
    n_orgs = round(n_records * organization_share / mean_copies)
    n_people = round(n_records * (1 - organization_share) / mean_copies)
    entities: list[tuple[str, dict[str, Any]]] = [
        ("organization", o) for o in _org_entities(g, n_orgs)
    ]
    # Employers of the people: their work and info@ addresses (companies need not be
    # customers themselves).
    for k in range(max(n_people // 40, 5)):
        cc = g.country()
        slug = r.choice(ORG_WORDS) + r.choice(ORG_INDUSTRY).lower()
        g.companies.append((f"{slug}{k}.{_TLD[cc]}", cc))
    entities += [("person", p) for p in _person_entities(g, n_people)]
    records: list[dict[str, Any]] = []
    truth: list[int] = []
    counters = dict.fromkeys(SYSTEMS, 0)
    for entity_id, (kind, entity) in enumerate(entities):
        k = r.choices(copies, copy_w)[0]
        systems = r.sample(SYSTEMS, min(k, len(SYSTEMS)))
        if r.random() < 0.05:
            systems.append(systems[0])  # a duplicate inside one system
        for system in systems:
            make = _person_record if kind == "person" else _org_record
            rec = make(g, entity, system)
            counters[system] += 1
            rec["id"] = f"{system}:{counters[system]:07d}"
            rec["system"] = system
            records.append(rec)
            truth.append(entity_id)
    order = list(range(len(records)))
    r.shuffle(order)
    return World(
        records=[records[i] for i in order],
        truth=np.asarray(truth, dtype=np.int64)[order],
        meta={"seed": seed, "entities": len(entities), "records": len(records)},
    )


# -- metrics -----------------------------------------------------------------------------


@dataclass
class Metrics:
    precision: float
    recall: float
    f1: float
    true_positives: int
    predicted_pairs: int
    true_pairs: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "true_positives": self.true_positives,
            "predicted_pairs": self.predicted_pairs,
            "true_pairs": self.true_pairs,
        }


def labels_from_clusters(clusters: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """Cluster label per record index; records in no cluster are singletons."""
    labels = np.arange(n, dtype=np.int64) + n  # singletons get labels no cluster uses
    for label, members in enumerate(clusters):
        labels[np.asarray(members, dtype=np.int64)] = label
    return labels


def _pairs(counts: np.ndarray) -> int:
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def pairwise_metrics(
    predicted: np.ndarray | Sequence[Sequence[int]], truth: np.ndarray | Sequence[int]
) -> Metrics:
    """Precision, recall and F1 over record pairs: a pair is predicted when both records
    are in one cluster, true when both are one entity. ``predicted`` is a label per record
    or a list of clusters of record indices. Counted from the contingency table, so it
    costs O(n log n), not O(pairs)."""
    truth = np.asarray(truth, dtype=np.int64)
    n = len(truth)
    if isinstance(predicted, np.ndarray) and predicted.ndim == 1 and len(predicted) == n:
        labels = predicted.astype(np.int64)
    else:
        labels = labels_from_clusters(predicted, n)  # type: ignore[arg-type]
    _, pred_counts = np.unique(labels, return_counts=True)
    _, true_counts = np.unique(truth, return_counts=True)
    _, both = np.unique(np.stack([labels, truth], axis=1), axis=0, return_counts=True)
    tp, pp, tpairs = _pairs(both), _pairs(pred_counts), _pairs(true_counts)
    precision = tp / pp if pp else 1.0
    recall = tp / tpairs if tpairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Metrics(precision, recall, f1, tp, pp, tpairs)


def deterministic_baseline(records: Sequence[dict[str, Any]]) -> np.ndarray:
    """Cluster labels from exact key linking alone: records sharing a normalized e-mail,
    phone, tax id or national id are one customer (connected components, no guards)."""
    from .cluster import connected_components
    from .model import canonical_phone
    from .normalize import email as norm_email
    from .normalize import national_id, tax_id

    n = len(records)
    ia_all, ib_all = [], []
    for name, fn in (
        ("email", lambda r: norm_email(r["email"]) if "@" in r["email"] else ""),
        ("phone", lambda r: canonical_phone(r["phone"], r.get("country") or "")),
        ("tax_id", lambda r: tax_id(r["tax_id"])),
        ("national_id", lambda r: national_id(r["national_id"])),
    ):
        first_seen: dict[str, int] = {}
        for i, rec in enumerate(records):
            if not rec.get(name):
                continue
            value = fn(rec)
            if not value:
                continue
            j = first_seen.setdefault(value, i)
            if j != i:
                ia_all.append(j)
                ib_all.append(i)
    return connected_components(
        n, np.asarray(ia_all, dtype=np.int64), np.asarray(ib_all, dtype=np.int64)
    )
