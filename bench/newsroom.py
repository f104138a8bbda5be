"""A synthetic newsroom catalog: captioned photos of named people in settings, articles about
them, and short queries in other words; relevance follows from how each was composed.

Every photo shows a subject (a named person, or nobody known) in one setting at one moment,
captioned in one of several wordings. Each person is photographed mostly in five settings of
their own. An article (100-300 words) names one or two people in one of their settings: a
headline, two or three sentences about the setting among unrelated news sentences, and often a
sentence about another setting; its names are written as they are, in lower case, or as a
possessive. Its relevant photos show one of its people in its setting. A short query
paraphrases a setting with none of its captions' words; its relevant photos are that setting's.
People include near-identical names (Ana Lima and Anna Lima, Jo Parker and Joe Park).

    newsroom = compose(seed=7)
    newsroom.write(folder)            # tiny JPEGs and folder/catalog.jsonl for `semsql ingest`
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    name: str
    captions: tuple[str, ...]  # how a caption says it
    headlines: tuple[str, ...]  # {p}: the people named
    sentences: tuple[str, ...]  # {p}: the people (or a pronoun)
    queries: tuple[str, ...]  # paraphrases sharing no word with the captions


SETTINGS = (
    Setting(
        "beach",
        ("on a sandy beach", "by the seaside with waves behind", "at the shore near the surf"),
        ("{p} enjoys a summer day at the beach", "{p} soaks up the sun on the coast"),
        (
            "{p} spent the afternoon on the sand as the waves rolled in.",
            "Surfers and swimmers crowded the coastline around {p}.",
            "The seaside was packed with families and sandcastles all day.",
        ),
        ("sunbathing next to the ocean", "a holiday swim in salty water"),
    ),
    Setting(
        "wedding",
        (
            "at a wedding reception",
            "as bride and groom cut the cake",
            "among guests at a marriage ceremony",
        ),
        ("{p} ties the knot", "Wedding bells ring for {p}"),
        (
            "{p} danced late into the night at the reception.",
            "The ceremony was held in a small chapel, and guests threw petals as the couple left.",
            "Friends said the vows were short but moving.",
        ),
        ("a couple exchanging vows at the altar", "newlyweds celebrating their union"),
    ),
    Setting(
        "stadium",
        (
            "in a packed football stadium",
            "cheering from the stands of a soccer match",
            "beside the pitch during a league game",
        ),
        ("{p} cheers on the home team", "{p} watches the derby from the stands"),
        (
            "{p} joined forty thousand supporters as the home side scored late in the match.",
            "The stadium roared when the final whistle blew.",
            "Fans in team scarves sang through both halves of the game.",
        ),
        ("spectators watching a sports fixture in an arena", "supporters celebrating a goal"),
    ),
    Setting(
        "kitchen",
        (
            "cooking in a restaurant kitchen",
            "chopping vegetables at a stove",
            "preparing a meal with a chef's knife",
        ),
        ("{p} cooks up a storm", "In the kitchen with {p}"),
        (
            "{p} chopped onions and stirred a simmering sauce for the evening service.",
            "Pots bubbled on every burner as the cooks plated dishes.",
            "The recipe, a family favourite, takes three hours to prepare.",
        ),
        ("making dinner, frying food in a pan", "someone baking bread at home"),
    ),
    Setting(
        "mountain",
        (
            "hiking on a rocky mountain trail",
            "climbing a steep alpine path",
            "trekking near a summit",
        ),
        ("{p} takes on the mountains", "{p} reaches the summit"),
        (
            "{p} hiked for six hours along a rocky ridge to reach the peak.",
            "The trail climbs steeply through pine forest before the summit.",
            "Hikers carried heavy backpacks up the mountain path.",
        ),
        ("walking uphill among peaks and boulders", "an expedition to high altitude"),
    ),
    Setting(
        "concert",
        (
            "performing on a concert stage",
            "singing into a microphone at a gig",
            "playing guitar before a crowd of fans",
        ),
        ("{p} plays a sold-out show", "{p} rocks the festival"),
        (
            "{p} sang and played guitar on stage in front of a huge crowd.",
            "The band's concert ended with a long encore.",
            "Fans waved their phones as the music filled the hall.",
        ),
        ("live music show with a band", "an artist entertaining an audience"),
    ),
    Setting(
        "court",
        (
            "leaving a courtroom after a hearing",
            "standing before a judge in court",
            "speaking to lawyers outside the courthouse",
        ),
        ("{p} appears in court", "Verdict day for {p}"),
        (
            "{p} stood before the judge as the hearing began in the courtroom.",
            "Lawyers argued the case for most of the day in court.",
            "Reporters waited on the courthouse steps for the verdict.",
        ),
        ("a trial in the legal chamber", "an attorney defending a client"),
    ),
    Setting(
        "hospital",
        (
            "visiting patients in a hospital ward",
            "talking with nurses at a clinic",
            "touring a medical centre",
        ),
        ("{p} visits the children's hospital", "{p} thanks hospital staff"),
        (
            "{p} walked through the hospital wards and thanked the nurses.",
            "Doctors at the clinic showed the new medical equipment.",
            "Patients in the ward received gifts and cards.",
        ),
        ("doctors caring for the sick", "health workers treating the injured"),
    ),
    Setting(
        "school",
        (
            "teaching pupils in a classroom",
            "reading to children at a primary school",
            "writing on a blackboard for students",
        ),
        ("{p} goes back to school", "{p} inspires young pupils"),
        (
            "{p} read a story to a class of eight-year-olds at the school.",
            "Pupils in the classroom asked questions about books.",
            "The teachers said the school visit was the highlight of term.",
        ),
        ("a lesson for kids", "educating youngsters at their desks"),
    ),
    Setting(
        "snow",
        (
            "skiing down a snowy slope",
            "on a ski lift at a winter resort",
            "building a snowman after heavy snowfall",
        ),
        ("{p} hits the slopes", "{p} enjoys a winter break"),
        (
            "{p} skied down the snowy slopes of the resort all morning.",
            "Fresh snow fell overnight and the ski lifts opened early.",
            "The winter resort was busy with skiers and snowboarders.",
        ),
        ("gliding across frozen white powder", "a cold holiday in the alps with sledges"),
    ),
    Setting(
        "airport",
        (
            "boarding a plane at the airport",
            "waiting at a departure gate",
            "walking through a terminal with luggage",
        ),
        ("{p} jets off", "{p} lands after a long journey"),
        (
            "{p} was seen at the airport boarding an early flight.",
            "Passengers queued at the departure gate with their luggage.",
            "The terminal was crowded as planes were delayed.",
        ),
        ("catching a flight abroad", "travellers flying overseas"),
    ),
    Setting(
        "market",
        (
            "buying fruit at a farmers market",
            "browsing stalls of a street market",
            "tasting cheese from a market vendor",
        ),
        ("{p} shops local", "A morning at the market with {p}"),
        (
            "{p} bought fruit and cheese from the stalls of the farmers market.",
            "Vendors at the market sold fresh bread and vegetables.",
            "The weekend market draws shoppers from across the region.",
        ),
        ("shopping for fresh produce outdoors", "grocers selling apples and greens"),
    ),
    Setting(
        "laboratory",
        (
            "working in a science laboratory",
            "looking through a microscope",
            "mixing chemicals in test tubes",
        ),
        ("{p} tours the new research lab", "Science with {p}"),
        (
            "{p} looked through a microscope in the new science laboratory.",
            "Researchers in the lab showed their chemistry experiments.",
            "The laboratory will study new vaccines.",
        ),
        ("researchers running experiments", "scientists studying samples"),
    ),
    Setting(
        "press",
        (
            "speaking at a press conference",
            "answering reporters' questions at a podium",
            "addressing journalists in front of microphones",
        ),
        ("{p} faces the media", "{p} speaks to reporters"),
        (
            "{p} answered questions from journalists at a crowded press conference.",
            "Reporters lined up microphones in front of the podium.",
            "The briefing lasted almost an hour.",
        ),
        ("a briefing for the media", "a statement to the news cameras"),
    ),
)

MOMENTS = (
    "smiling",
    "laughing with friends",
    "waving to the camera",
    "shaking hands",
    "looking thoughtful",
    "talking on the phone",
    "posing for a photo",
    "in a blue jacket",
    "holding a cup of coffee",
    "wearing sunglasses",
)
STRANGERS = (
    "A man",
    "A woman",
    "Two friends",
    "A family",
    "An elderly couple",
    "A group of teenagers",
    "A young girl",
    "A boy",
)
FILLER = (
    "Shares in the city's largest bank fell two percent on Tuesday after weak results.",
    "The council approved a new budget for road repairs in the northern districts.",
    "Forecasters expect heavy rain over the weekend and cooler temperatures next week.",
    "A new train timetable comes into force at the start of next month.",
    "The price of petrol rose for the third week in a row.",
    "Local elections will be held in the spring, officials confirmed.",
    "A technology company announced it would open a new office downtown.",
    "Traffic was slow on the ring road after an accident near the bridge.",
    "The central bank kept interest rates unchanged.",
    "A survey found that most residents want more bicycle lanes.",
    "The museum will extend its opening hours during the holidays.",
    "Unemployment fell slightly in the last quarter, according to new figures.",
    "A software update caused problems for some mobile phone users.",
    "The library is asking for volunteers to help sort donated books.",
    "Water bills are expected to rise by five percent next year.",
    "Police reminded drivers to check their tyres before long journeys.",
    "A new bakery opened on the high street last week.",
    "The postal service said deliveries may be delayed by the strike.",
    "Energy prices have become a major concern for small businesses.",
    "The city plans to plant two thousand trees along its avenues.",
    "Officials said the new tax rules would take effect in January.",
    "A report on housing costs will be published on Friday.",
    "The zoo welcomed a baby giraffe, its first in ten years.",
    "Parking fees in the centre will be reviewed by the council.",
    "The hospital trust published its annual accounts on Thursday.",
    "A bridge on the eastern motorway will close for repairs in March.",
    "Mortgage rates edged higher as lenders reacted to the inflation figures.",
    "Scientists warned that the drought could affect this year's harvest.",
    "The government is expected to announce changes to pensions next week.",
    "Two new bus routes will link the suburbs with the university campus.",
    "A fire at a warehouse on the industrial estate was brought under control.",
    "The airline reported record passenger numbers for the summer.",
    "Ticket sales for the national lottery fell for the second year.",
    "A local charity raised more than ten thousand pounds for the food bank.",
    "The opposition called for an inquiry into the delayed rail project.",
    "Broadband speeds in rural areas remain well below the national average.",
    "The school board will vote on the new term dates in April.",
    "Retail sales were flat in October, according to the statistics office.",
)
OTHER_SETTING = (
    "Last year {p} was photographed {c}, but that was a different story.",
    "Earlier in the week the team had been {c} for another feature.",
)

FIRST = (
    "Ana",
    "Anna",
    "Jo",
    "Joe",
    "Sofia",
    "Sophia",
    "Mark",
    "Marc",
    "Liam",
    "Omar",
    "Yuki",
    "Priya",
    "Lars",
    "Chloe",
    "Diego",
    "Fatima",
    "Hugo",
    "Ines",
    "Kofi",
    "Mei",
)
LAST = (
    "Lima",
    "Parker",
    "Park",
    "Rossi",
    "Chen",
    "Byrne",
    "Haddad",
    "Tanaka",
    "Sharma",
    "Nilsson",
    "Dubois",
    "Garcia",
    "Khan",
    "Weber",
    "Costa",
    "Mensah",
    "Wong",
    "Novak",
)
NEAR_IDENTICAL = (
    ("Ana Lima", "Anna Lima"),
    ("Jo Parker", "Joe Park"),
    ("Sofia Rossi", "Sophia Rossi"),
    ("Mark Chen", "Marc Chen"),
)


@dataclass
class Photo:
    key: str
    caption: str
    people: list[str]
    setting: str


@dataclass
class Article:
    key: str
    text: str
    people: list[str]
    setting: str
    words: int
    relevant: set[str] = field(default_factory=set)


@dataclass
class Query:
    text: str
    setting: str
    relevant: set[str] = field(default_factory=set)


@dataclass
class Newsroom:
    people: list[str]
    photos: list[Photo]
    articles: list[Article]
    queries: list[Query]

    def write(self, folder: Path) -> Path:
        """Tiny distinct JPEGs and a JSONL manifest of their captions and people; its path."""
        from PIL import Image

        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for number, photo in enumerate(self.photos):
            path = folder / f"{photo.key}.jpg"
            if not path.exists():
                rng = random.Random(number)
                image = Image.new("RGB", (8, 8))
                image.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(64)])
                image.save(path, quality=95)
            rows.append({"uri": path.name, "caption": photo.caption, "people": photo.people})
        manifest = folder / "catalog.jsonl"
        manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return manifest


def people_names(count: int, rng: random.Random) -> list[str]:
    names = [name for pair in NEAR_IDENTICAL for name in pair]
    others = sorted({f"{first} {last}" for first in FIRST for last in LAST} - set(names))
    rng.shuffle(others)
    return names + others[: max(0, count - len(names))]


def caption_for(subject: str, setting: Setting, rng: random.Random) -> str:
    where, moment = rng.choice(setting.captions), rng.choice(MOMENTS)
    template = rng.choice(("{s} {m} {w}", "{s}, {m}, {w}", "{s} {w}, {m}"))
    return template.format(s=subject, m=moment, w=where)


def mention(name: str, style: str) -> str:
    return {"plain": name, "lower": name.lower(), "possessive": name + "'s"}[style]


def compose_article(
    key: str, people: list[str], setting: Setting, rng: random.Random, other: Setting
) -> Article:
    names = " and ".join(people)
    style = rng.choice(("plain", "plain", "lower", "possessive"))
    headline = rng.choice(setting.headlines).format(p=names)
    about = [s.format(p=names if "{p}" in s else "") for s in setting.sentences]
    lead = about[0]
    if style == "possessive":
        lead = f"It was a big day for {names}. " + lead
        lead += f" {mention(people[0], 'possessive')} friends came too."
    body = [lead, *rng.sample(about[1:], k=rng.choice((1, 2)))]
    filler = rng.sample(FILLER, k=rng.randint(6, 17))
    if rng.random() < 0.6:
        filler.insert(
            rng.randrange(len(filler) + 1),
            rng.choice(OTHER_SETTING).format(p=names, c=rng.choice(other.captions)),
        )
    sentences = [body[0]]
    rest = body[1:] + filler
    rng.shuffle(rest)
    sentences += rest
    text = headline + "\n\n" + " ".join(sentences)
    if style == "lower":  # as pasted from a post that writes names in lower case
        for person in people:
            text = text.replace(person, mention(person, "lower"))
    while len(text.split()) < 100:
        text += " " + rng.choice([f for f in FILLER if f not in text])
    words = text.split()
    if len(words) > 300:
        text = " ".join(words[:300])
    return Article(key, text, people, setting.name, len(text.split()))


def compose(
    seed: int = 7,
    people: int = 40,
    homes: int = 5,
    per_home: int = 8,
    strays: int = 4,
    strangers: int = 400,
    articles: int = 32,
) -> Newsroom:
    """The catalog: each person photographed per_home times in each of `homes` settings of
    their own and `strays` times elsewhere; `strangers` photos of nobody known; the articles
    and queries. (per_home 8: an article's P@10 can reach 0.8 with one person named.)"""
    rng = random.Random(seed)
    names = people_names(people, rng)
    by_name = {s.name: s for s in SETTINGS}
    home_of: dict[str, list[str]] = {}
    photos: list[Photo] = []
    for number, name in enumerate(names):
        home_of[name] = rng.sample([s.name for s in SETTINGS], k=homes)
        places = [h for h in home_of[name] for _ in range(per_home)]
        places += rng.sample([s.name for s in SETTINGS if s.name not in home_of[name]], k=strays)
        for shot, place in enumerate(places):
            caption = caption_for(name, by_name[place], rng)
            photos.append(Photo(f"p{number:03d}_{shot:02d}", caption, [name], place))
    for number in range(strangers):
        setting = rng.choice(SETTINGS)
        caption = caption_for(rng.choice(STRANGERS), setting, rng)
        photos.append(Photo(f"s{number:04d}", caption, [], setting.name))

    stories: list[Article] = []
    pairs = [name for pair in NEAR_IDENTICAL for name in pair]
    for number in range(articles):
        # The near-identical names first, each alone; then one or two people sharing a setting.
        if number < len(pairs):
            cast = [pairs[number]]
        else:
            cast = [rng.choice(names)]
            partners = [
                n for n in names if n != cast[0] and set(home_of[n]) & set(home_of[cast[0]])
            ]
            if rng.random() < 0.3 and partners:
                cast.append(rng.choice(partners))
        shared = sorted(set.intersection(*(set(home_of[p]) for p in cast)))
        setting = by_name[rng.choice(shared)]
        other = rng.choice([s for s in SETTINGS if s.name != setting.name])
        stories.append(compose_article(f"a{number:02d}", cast, setting, rng, other))
    for story in stories:
        story.relevant = {
            p.key
            for p in photos
            if p.setting == story.setting and set(p.people) & set(story.people)
        }
    queries = [Query(text, s.name) for s in SETTINGS for text in s.queries]
    for query in queries:
        query.relevant = {p.key for p in photos if p.setting == query.setting}
    return Newsroom(names, photos, stories, queries)
