"""Reference data for the demo world: names, places, companies, products per country.

Small built-in lists instead of Faker, so the world needs no extra dependency and a seed
always draws the same people.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


def _w(text: str) -> tuple[str, ...]:
    """Words separated by spaces."""
    return tuple(text.split())


def _l(text: str) -> tuple[str, ...]:
    """Items separated by semicolons (for names with spaces)."""
    return tuple(s.strip() for s in text.split(";") if s.strip())


@dataclass(frozen=True)
class Country:
    code: str
    label: str  # as the CRM's country picker spells it
    currency: str
    vat_rate: Decimal
    tld: str
    locale: str
    time_zone: str
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    # city, region, postal code pattern (# a digit, ? a letter), landline prefix (national)
    cities: tuple[tuple[str, str, str, str], ...]
    streets: tuple[str, ...]
    number_first: bool  # "12 High Street" rather than "Hauptstraße 12"
    brands: tuple[str, ...]
    industries: tuple[str, ...]
    industry_first: bool  # "Transports Mistral" rather than "Mistral Transports"
    legal_forms: tuple[str, ...]
    free_mail: tuple[str, ...]
    info_boxes: tuple[str, ...]  # the company's general mailbox
    billing_boxes: tuple[str, ...]  # where invoices go
    mobile_prefixes: tuple[str, ...]
    landline_digits: int  # length of the national significant number
    mobile_digits: int


COUNTRIES: dict[str, Country] = {
    c.code: c
    for c in (
        Country(
            code="US",
            label="United States",
            currency="USD",
            vat_rate=Decimal("0"),
            tld="com",
            locale="en-US",
            time_zone="America/New_York",
            first_names=_w(
                "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William "
                "Barbara Richard Susan Joseph Jessica Thomas Sarah Christopher Karen Daniel Emily "
                "Matthew Ashley Anthony Olivia Mark Megan Steven Rachel Katherine Brian"
            ),
            last_names=_w(
                "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez "
                "Hernandez Lopez Wilson Anderson Taylor Moore Jackson Martin Lee Thompson White "
                "Harris Clark Lewis Robinson Walker Young Allen King Wright Scott Hill Green Adams "
                "Baker Nelson Carter Mitchell Roberts Turner"
            ),
            cities=(
                ("New York", "NY", "100##", "212"),
                ("San Francisco", "CA", "941##", "415"),
                ("Chicago", "IL", "606##", "312"),
                ("Boston", "MA", "021##", "617"),
                ("Seattle", "WA", "981##", "206"),
                ("Austin", "TX", "787##", "512"),
                ("Denver", "CO", "802##", "303"),
                ("Atlanta", "GA", "303##", "404"),
                ("Miami", "FL", "331##", "305"),
                ("Portland", "OR", "972##", "503"),
            ),
            streets=_l(
                "Main Street; Oak Avenue; Maple Drive; Cedar Lane; Pine Street; Elm Street; "
                "Washington Avenue; Park Avenue; Market Street; Mission Street; Broadway; Lake "
                "Shore Drive"
            ),
            number_first=True,
            brands=_w(
                "Summit Pioneer Redwood Harbor Lakeside Granite Northstar Evergreen Silverline "
                "Ironwood Keystone Cascade Liberty Bluewater Frontier"
            ),
            industries=_w(
                "Logistics Analytics Software Manufacturing Health Foods Energy Robotics "
                "Consulting Labs Outfitters Systems Supply Media"
            ),
            industry_first=False,
            legal_forms=_w("Inc. LLC Corp."),
            free_mail=_w("gmail.com yahoo.com outlook.com icloud.com hotmail.com aol.com"),
            info_boxes=_w("info hello contact"),
            billing_boxes=_w("billing accounts ap"),
            mobile_prefixes=_w("212 415 312 617 206 512 303 404 305 503 646 917"),
            landline_digits=10,
            mobile_digits=10,
        ),
        Country(
            code="GB",
            label="United Kingdom",
            currency="GBP",
            vat_rate=Decimal("0.20"),
            tld="co.uk",
            locale="en-GB",
            time_zone="Europe/London",
            first_names=_w(
                "Oliver Amelia George Isla Harry Ava Jack Emily Charlie Sophie Thomas Grace James "
                "Lily William Freya Alfie Ella Henry Charlotte Edward Poppy Samuel Evie Joseph "
                "Florence Daniel Alice Benjamin Hannah"
            ),
            last_names=_w(
                "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson "
                "Evans Walker White Roberts Green Hall Wood Jackson Clarke Hughes Edwards Turner "
                "Hill Cooper Ward Morris Harris Clark Patel Wilkinson Bennett"
            ),
            cities=(
                ("London", "Greater London", "EC# #??", "20"),
                ("Manchester", "Greater Manchester", "M# #??", "161"),
                ("Birmingham", "West Midlands", "B# #??", "121"),
                ("Leeds", "West Yorkshire", "LS# #??", "113"),
                ("Bristol", "Bristol", "BS# #??", "117"),
                ("Edinburgh", "Scotland", "EH# #??", "131"),
                ("Glasgow", "Scotland", "G# #??", "141"),
            ),
            streets=_l(
                "High Street; Station Road; Church Lane; Victoria Road; King Street; Queen's Road; "
                "Mill Lane; Park Road; London Road; Albert Street"
            ),
            number_first=True,
            brands=_w(
                "Thames Albion Pennine Kingfisher Oakridge Highgate Cotswold Northgate Redbrick "
                "Windsor Severn Chiltern"
            ),
            industries=_w(
                "Engineering Consulting Logistics Software Foods Design Holdings Instruments "
                "Trading Textiles Brewing Surveys"
            ),
            industry_first=False,
            legal_forms=_w("Ltd Limited PLC"),
            free_mail=_w(
                "gmail.com hotmail.co.uk outlook.com yahoo.co.uk btinternet.com icloud.com"
            ),
            info_boxes=_w("info hello enquiries"),
            billing_boxes=_w("accounts billing finance"),
            mobile_prefixes=_w("74 75 77 78 79"),
            landline_digits=10,
            mobile_digits=10,
        ),
        Country(
            code="DE",
            label="Germany",
            currency="EUR",
            vat_rate=Decimal("0.19"),
            tld="de",
            locale="de-DE",
            time_zone="Europe/Berlin",
            first_names=_w(
                "Lukas Anna Leon Marie Finn Sophie Jonas Emma Paul Mia Felix Hannah Maximilian Lea "
                "Elias Laura Noah Katharina Luis Julia Tim Lena Jan Sarah Niklas Johanna Alexander "
                "Clara Tobias Jürgen"
            ),
            last_names=_w(
                "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann "
                "Schäfer Koch Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun "
                "Krüger Hofmann Hartmann Lange Schmitt Werner Krause Meier Lehmann Brandt Vogel"
            ),
            cities=(
                ("Berlin", "Berlin", "10###", "30"),
                ("Hamburg", "Hamburg", "20###", "40"),
                ("München", "Bayern", "80###", "89"),
                ("Köln", "Nordrhein-Westfalen", "50###", "221"),
                ("Frankfurt am Main", "Hessen", "60###", "69"),
                ("Stuttgart", "Baden-Württemberg", "70###", "711"),
                ("Düsseldorf", "Nordrhein-Westfalen", "40###", "211"),
                ("Leipzig", "Sachsen", "04###", "341"),
            ),
            streets=_w(
                "Hauptstraße Bahnhofstraße Gartenstraße Schillerstraße Goethestraße Lindenallee "
                "Friedrichstraße Bergstraße Kirchweg Industriestraße"
            ),
            number_first=False,
            brands=_w(
                "Nordlicht Rheintal Alpenblick Hanse Spreewerk Schwarzwald Elbtal Isartal Mainfeld "
                "Weserland"
            ),
            industries=_w(
                "Maschinenbau Logistik Software Elektrotechnik Feinkost Medizintechnik Baustoffe "
                "Antriebstechnik Verpackung Consulting Solartechnik Werkzeugbau"
            ),
            industry_first=False,
            legal_forms=_l("GmbH; AG; GmbH & Co. KG; KG"),
            free_mail=_w("gmail.com gmx.de web.de t-online.de outlook.com"),
            info_boxes=_w("info kontakt"),
            billing_boxes=_w("rechnung buchhaltung"),
            mobile_prefixes=_w("151 152 157 160 162 170 171 172 175 176 177 179"),
            landline_digits=10,
            mobile_digits=11,
        ),
        Country(
            code="FR",
            label="France",
            currency="EUR",
            vat_rate=Decimal("0.20"),
            tld="fr",
            locale="fr-FR",
            time_zone="Europe/Paris",
            first_names=_w(
                "Gabriel Louise Léo Jade Raphaël Emma Louis Alice Arthur Chloé Jules Lina Adam Léa "
                "Hugo Manon Lucas Camille Nathan Inès Théo Sarah Paul Juliette Antoine Margaux "
                "Guillaume Élodie Nicolas Céline"
            ),
            last_names=_w(
                "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon "
                "Laurent Lefebvre Michel Garcia David Bertrand Roux Vincent Fournier Morel Girard "
                "André Lefèvre Mercier Dupont Lambert Bonnet François Martinez"
            ),
            cities=(
                ("Paris", "Île-de-France", "750##", "1"),
                ("Lyon", "Auvergne-Rhône-Alpes", "6900#", "4"),
                ("Marseille", "Provence-Alpes-Côte d'Azur", "130##", "4"),
                ("Toulouse", "Occitanie", "310##", "5"),
                ("Bordeaux", "Nouvelle-Aquitaine", "330##", "5"),
                ("Lille", "Hauts-de-France", "590##", "3"),
                ("Nantes", "Pays de la Loire", "440##", "2"),
            ),
            streets=_l(
                "rue de la République; avenue Victor Hugo; boulevard Haussmann; rue de Rivoli; "
                "avenue Jean Jaurès; rue Pasteur; place de la Bourse; quai des Chartrons; rue "
                "Nationale; rue du Faubourg Saint-Honoré"
            ),
            number_first=True,
            brands=_w(
                "Atlantique Provence Lumière Horizon Mistral Azur Bretagne Alpin Loire Rivage"
            ),
            industries=_w(
                "Conseil Logistique Informatique Industries Distribution Ingénierie Cosmétiques "
                "Emballages Énergie Vins Médical Transports"
            ),
            industry_first=True,
            legal_forms=_w("SAS SARL SA"),
            free_mail=_w("gmail.com orange.fr free.fr laposte.net outlook.com hotmail.fr"),
            info_boxes=_w("contact info"),
            billing_boxes=_w("factures comptabilite"),
            mobile_prefixes=_w("6 7"),
            landline_digits=9,
            mobile_digits=9,
        ),
        Country(
            code="NL",
            label="Netherlands",
            currency="EUR",
            vat_rate=Decimal("0.21"),
            tld="nl",
            locale="nl-NL",
            time_zone="Europe/Amsterdam",
            first_names=_w(
                "Daan Emma Sem Julia Lucas Mila Levi Tess Finn Sophie Milan Zoë Jesse Sara Bram "
                "Anna Thijs Eva Ruben Lotte Lars Fleur Stijn Noor Thomas Lieke Niels Sanne Joris "
                "Femke"
            ),
            last_names=_l(
                "de Jong; Jansen; de Vries; van den Berg; van Dijk; Bakker; Janssen; Visser; Smit; "
                "Meijer; de Boer; Mulder; de Groot; Bos; Vos; Peters; Hendriks; van Leeuwen; "
                "Dekker; Brouwer; de Wit; Dijkstra; Smits; de Graaf; van der Meer"
            ),
            cities=(
                ("Amsterdam", "Noord-Holland", "10## ??", "20"),
                ("Rotterdam", "Zuid-Holland", "30## ??", "10"),
                ("Utrecht", "Utrecht", "35## ??", "30"),
                ("Den Haag", "Zuid-Holland", "25## ??", "70"),
                ("Eindhoven", "Noord-Brabant", "56## ??", "40"),
                ("Groningen", "Groningen", "97## ??", "50"),
            ),
            streets=_l(
                "Keizersgracht; Herengracht; Stationsplein; Kerkstraat; Dorpsstraat; Molenweg; "
                "Nieuwe Binnenweg; Oudegracht; Lange Voorhout; Stratumseind"
            ),
            number_first=False,
            brands=_w("Delta Polder Tulp Noordzee Dijk Molen Oranje Wadden Zeeland Grachten"),
            industries=_w(
                "Logistiek Techniek Software Installatietechniek Bouw Advies Handel Media Energie "
                "Verpakkingen Tuinbouw Data"
            ),
            industry_first=False,
            legal_forms=_w("B.V. N.V."),
            free_mail=_w("gmail.com outlook.com ziggo.nl kpnmail.nl hotmail.com"),
            info_boxes=_w("info"),
            billing_boxes=_w("facturen administratie"),
            mobile_prefixes=_w("6"),
            landline_digits=9,
            mobile_digits=9,
        ),
        Country(
            code="ES",
            label="Spain",
            currency="EUR",
            vat_rate=Decimal("0.21"),
            tld="es",
            locale="es-ES",
            time_zone="Europe/Madrid",
            first_names=_w(
                "Hugo Lucía Martín Sofía Pablo María Mateo Martina Daniel Paula Alejandro Valeria "
                "Álvaro Julia Manuel Carmen Javier Elena Diego Laura Sergio Ana Adrián Marta David "
                "Irene Jorge Claudia Raúl Nuria"
            ),
            last_names=_w(
                "García Rodríguez González Fernández López Martínez Sánchez Pérez Gómez Martín "
                "Jiménez Ruiz Hernández Díaz Moreno Muñoz Álvarez Romero Alonso Gutiérrez Navarro "
                "Torres Domínguez Vázquez Ramos Gil Serrano Blanco"
            ),
            cities=(
                ("Madrid", "Comunidad de Madrid", "280##", "91"),
                ("Barcelona", "Cataluña", "080##", "93"),
                ("Valencia", "Comunidad Valenciana", "460##", "96"),
                ("Sevilla", "Andalucía", "410##", "95"),
                ("Bilbao", "País Vasco", "480##", "94"),
                ("Málaga", "Andalucía", "290##", "952"),
                ("Zaragoza", "Aragón", "500##", "976"),
            ),
            streets=_l(
                "Calle Mayor; Gran Vía; Paseo de la Castellana; Calle de Alcalá; Avinguda "
                "Diagonal; Calle Serrano; Calle Colón; Avenida de la Constitución; Calle Larios; "
                "Paseo de Gracia"
            ),
            number_first=False,
            brands=_w(
                "Ibérica Mediterráneo Cantábrico Sol Levante Atlántida Sierra Castilla Andalucía "
                "Pirineo"
            ),
            industries=_w(
                "Logística Consultoría Ingeniería Alimentación Software Construcciones Energía "
                "Distribuciones Textil Transportes Cerámica Vinos"
            ),
            industry_first=True,
            legal_forms=_w("S.L. S.A."),
            free_mail=_w("gmail.com hotmail.com outlook.com yahoo.com telefonica.net"),
            info_boxes=_w("info contacto"),
            billing_boxes=_w("facturacion administracion"),
            mobile_prefixes=_w("6 7"),
            landline_digits=9,
            mobile_digits=9,
        ),
    )
}
COUNTRY_WEIGHTS = (("US", 30), ("GB", 20), ("DE", 18), ("FR", 12), ("NL", 10), ("ES", 10))

NICKNAMES = {
    "Katherine": "Kate",
    "William": "Bill",
    "Robert": "Bob",
    "Elizabeth": "Liz",
    "James": "Jim",
    "Michael": "Mike",
    "Jennifer": "Jen",
    "Thomas": "Tom",
    "Christopher": "Chris",
    "Daniel": "Dan",
    "Matthew": "Matt",
    "Joseph": "Joe",
    "Richard": "Rick",
    "Alexander": "Alex",
    "Katharina": "Kathi",
    "Maximilian": "Max",
    "Samuel": "Sam",
    "Benjamin": "Ben",
    "Charlotte": "Lottie",
    "Nicolas": "Nico",
    "Alejandro": "Álex",
    "Guillaume": "Guillou",
    "Johanna": "Hanna",
    "Manuel": "Manu",
    "Edward": "Ed",
    "Florence": "Flo",
    "Patricia": "Pat",
    "Jessica": "Jess",
}
PLUS_TAGS = ("shop", "orders", "support", "news", "billing", "work")
JOB_TITLES = _l(
    "CEO; CFO; CTO; Head of Operations; IT Manager; Purchasing Manager; Office Manager; Finance "
    "Director; Managing Director; Procurement Lead; Head of Customer Service; Controller; "
    "Operations Manager; Accounts Payable Clerk"
)
HUBSPOT_INDUSTRIES = _w(
    "MACHINERY COMPUTER_SOFTWARE LOGISTICS_AND_SUPPLY_CHAIN FOOD_PRODUCTION MEDICAL_DEVICES "
    "MANAGEMENT_CONSULTING RETAIL RENEWABLES_ENVIRONMENT WHOLESALE "
    "INFORMATION_TECHNOLOGY_AND_SERVICES"
)
SALES_REPS = _l(
    "Olivia Bennett; Marcus Reed; Hannah Clarke; Lukas Hoffmann; Chloé Martin; Daan de Vries; "
    "Lucía Romero; Sophie Dubois"
)
B2B_PRODUCTS = (
    ("CC-TEAM-Y", "Concord Cloud Team plan, annual seat", "348.00"),
    ("CC-ENT-Y", "Concord Cloud Enterprise plan, annual seat", "780.00"),
    ("SVC-ONB-D", "Onboarding workshop (day)", "1450.00"),
    ("SVC-INT-H", "Integration engineering (hour)", "165.00"),
    ("SUP-PREM-Y", "Premium support, annual", "2400.00"),
    ("HW-SCN-200", "Barcode scanner BS-200", "189.00"),
    ("HW-PRN-420", "Label printer LP-420", "429.00"),
    ("CON-LBL-4X6", "Thermal labels 4x6, box of 12 rolls", "54.90"),
    ("HW-TAB-10", "Rugged tablet RT-10", "899.00"),
    ("TRN-SEAT", "Online training seat", "95.00"),
)
B2C_PRODUCTS = (
    ("HW-SCN-MINI", "Pocket scanner Mini", "59.00"),
    ("CON-LBL-2X1", "Address labels 2x1, 3 rolls", "14.90"),
    ("ACC-CASE", "Protective case", "24.90"),
    ("ACC-DOCK", "USB-C charging dock", "39.00"),
    ("APP-PLUS-M", "Concord Home Plus, monthly", "4.99"),
    ("APP-PLUS-Y", "Concord Home Plus, annual", "49.00"),
    ("HW-PRN-MINI", "Mini label printer", "79.00"),
    ("ACC-CBL", "Braided USB-C cable 2 m", "12.90"),
)
DEAL_TOPICS = _l(
    "Enterprise rollout; Seat expansion; Scanner fleet refresh; Premium support renewal; "
    "Onboarding package; Label printer upgrade; Warehouse pilot; Annual renewal; Integration "
    "project; Training programme"
)
HUBSPOT_STAGES = (
    ("Appointment Scheduled", 3),
    ("Qualified To Buy", 3),
    ("Presentation Scheduled", 2),
    ("Decision Maker Bought-In", 2),
    ("Contract Sent", 2),
)
B2B_TICKETS = _l(
    "Cannot log in after password reset; Invoice {invoice} shows the wrong VAT rate; Scanner "
    "BS-200 not pairing over Bluetooth; Please add five more seats; API returns 429 during the "
    "nightly sync; Label printer prints blank labels; Delivery {order} arrived incomplete; SSO "
    "with Azure AD fails; Please update our billing address; CSV export times out; Question about "
    "the Enterprise plan; Reschedule our onboarding workshop"
)
B2C_TICKETS = _l(
    "Where is my order {order}?; Refund for order {order}; App crashes on startup; Cancel my "
    "subscription; Charged twice this month; Pocket scanner battery drains fast; How do I change "
    "my e-mail address?; Item arrived damaged; Discount code not accepted; Password reset e-mail "
    "not arriving"
)
