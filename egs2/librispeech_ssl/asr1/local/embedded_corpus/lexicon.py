"""Word lists for the embedded corpus sentence grammar (``embedded_corpus.grammar``).

Written for this project. Every list is ordered roughly from common to rare: the grammar
samples list items with Zipf-like weights by position, so the first entries are frequent
and the tail is rare (that is what makes some test words unseen in the labeled training
set, as in real read speech).

Formats (parsed by ``embedded_corpus.words``):
  nouns       "singular" (regular plural), "singular|plural", "singular|-" (mass noun,
              no plural, no a/an)
  verbs       "base" (regular), "base*" (regular, doubles its final consonant:
              stop, stopped, stopping), or "base/3sg/past/participle/ing" (irregular,
              all five forms in one token)
  other lists one word or fixed phrase per entry, lower case except proper names.
"""

# --------------------------------------------------------------------------------- nouns
PERSON = """
man|men woman|women boy girl child|children friend teacher doctor farmer king queen
soldier sailor captain stranger neighbor mother father brother sister uncle aunt
grandmother grandfather baby|babies student driver baker fisherman|fishermen hunter
merchant prince princess|princesses nurse priest judge lawyer artist painter writer poet
singer dancer musician shepherd servant guard thief|thieves traveler pilot engineer
carpenter blacksmith miller tailor cook waiter clerk officer scientist professor gardener
visitor guest wife|wives husband son daughter cousin nephew niece widow lady|ladies
gentleman|gentlemen knight chief mayor messenger miner builder player partner porter
butcher shoemaker weaver potter banker preacher doorkeeper innkeeper peasant emperor
duke duchess|duchesses bishop monk nun pupil orphan beggar pirate giant dwarf|dwarves
witch|witches wizard goblin landlord governor secretary|secretaries inspector detective
""".split()

# Gender-neutral occupations, for "Mary was a kind teacher".
OCCUPATION = """
teacher doctor farmer sailor soldier captain driver baker hunter merchant nurse judge
lawyer artist painter writer poet singer dancer musician shepherd servant guard traveler
pilot engineer carpenter blacksmith miller tailor cook clerk officer scientist professor
gardener visitor guest neighbor stranger friend student player builder butcher weaver
potter banker innkeeper messenger secretary|secretaries inspector detective
""".split()

# Relations after a possessive: "the baker's wife", "Mary's dog".
KIN = """
friend wife husband son daughter brother sister mother father cousin uncle aunt servant
dog horse cat neighbor partner guest
""".split()

ANIMAL = """
dog cat horse bird cow sheep|sheep pig chicken duck goose|geese mouse|mice rabbit
fox|foxes wolf|wolves bear deer|deer lion tiger elephant monkey snake frog owl eagle crow
goat donkey bee butterfly|butterflies spider squirrel whale dolphin camel zebra turtle
parrot puppy|puppies kitten lamb bull ox|oxen swan hawk beetle ant pony|ponies rooster
hen pigeon sparrow robin salmon|salmon trout|trout badger otter hedgehog mole beaver
raven seagull lobster crab
""".split()

FOOD = """
apple egg cake pie orange potato|potatoes tomato|tomatoes carrot onion banana pear plum
cherry|cherries lemon peach|peaches sandwich|sandwiches biscuit cookie nut bean grape
melon strawberry|strawberries pumpkin cucumber sausage muffin pancake pudding turnip
cabbage radish|radishes walnut almond apricot loaf|loaves
bread|- cheese|- soup|- rice|- butter|- honey|- meat|- sugar|- salt|- flour|- jam|-
chocolate|- porridge|- corn|- bacon|- ham|- pepper|- cream|- toast|- pasta|- beef|-
""".split()

DRINK = """
water|- milk|- tea|- coffee|- juice|- wine|- lemonade|- cider|- cocoa|- broth|-
""".split()

THING = """
book letter key box|boxes basket bag bottle cup plate bowl knife|knives spoon fork hat
coat shoe glove ring watch|watches clock lamp candle chair table bed blanket pillow map
picture photograph newspaper pencil pen card ticket coin rope stick stone ball toy doll
drum guitar violin bell mirror umbrella jacket shirt dress|dresses scarf|scarves boot sock
wallet hammer nail ladder bucket barrel shovel axe sword shield flag kettle pot pan jar
envelope parcel package gift present necklace bracelet feather shell flower seed
jewel crown compass|compasses telescope camera radio notebook diary|diaries brush|brushes
comb towel lantern whistle trumpet flute harp cushion carpet curtain saddle
tray|trays teapot cupboard wheel candlestick chain padlock needle thimble apron
""".split()

CLOTHING = """
hat coat shoe glove ring watch|watches jacket shirt dress|dresses scarf|scarves boot sock
necklace bracelet apron crown cloak sweater uniform
""".split()

TEXT = """
letter story|stories poem note message report newspaper book map list article novel
recipe sign chapter page notice address|addresses song riddle diary|diaries telegram
contract will prayer
""".split()

MUSIC = """
song tune melody|melodies hymn ballad lullaby|lullabies march|marches carol
""".split()

PLACE = """
house village town city|cities river forest mountain hill field garden farm market school
church castle bridge road street harbor beach|beaches island lake valley kitchen room
library|libraries station hospital shop store office hotel inn palace tower mill barn
cottage cave desert meadow pond well park square museum theater factory|factories prison
camp port stable cellar attic hall courtyard chapel tavern bakery|bakeries cathedral
lighthouse orchard vineyard shore coast border cemetery|cemeteries monastery|monasteries
warehouse swamp cliff canyon glacier volcano|volcanoes fortress|fortresses quarry|quarries
""".split()

BUILDING = """
house school church castle bridge tower mill barn cottage hall chapel wall fence shed
cabin hut stable palace lighthouse temple
""".split()

VEHICLE = """
boat ship train car bus|buses cart wagon bicycle truck plane carriage coach|coaches sled
canoe ferry|ferries raft tram
""".split()

ABSTRACT = """
question answer idea plan secret problem promise mistake journey lesson game party|parties
meeting dream decision choice chance reason warning joke rumor trick prize price reward
job task test exam holiday|holidays wedding birthday adventure|adventures quarrel bargain
experiment puzzle
""".split()

PLANT = """
tree flower rose bush|bushes seed vine tulip daisy|daisies oak pine willow herb fern
lily|lilies
""".split()

NATURE = """
wind rain|- snow|- sun|- moon|- sky|- storm cloud star wave fog|- thunder|- lightning|- ice|-
frost|- mist|- darkness|- sunlight|- moonlight|-
""".split()

# Measured things for number sentences: (unit plural, what it measures).
UNITS = """
dollars pounds miles feet yards days weeks hours minutes years pennies shillings
""".split()

# ------------------------------------------------------------------------------ proper names
NAMES_MALE = """
John Thomas James William George Henry Charles Robert Edward Peter Arthur Richard Daniel
Michael David Samuel Joseph Frederick Albert Walter Harold Oliver Benjamin Francis Hugh
Patrick Stephen Philip Simon Andrew Frank Louis Victor Leonard Ralph Martin Paul Jack Tom
Ben Sam Alfred Ernest Herbert Lewis Matthew Roger Timothy Gilbert
""".split()

NAMES_FEMALE = """
Mary Anne Elizabeth Sarah Emily Margaret Alice Helen Catherine Susan Jane Lucy Rose Grace
Clara Martha Emma Laura Julia Agnes Edith Sophia Amelia Florence Ellen Nora Ruth Mabel
Dorothy Harriet Beatrice Ivy Irene Hannah Eleanor Esther Violet Molly Kate Polly Lily
Charlotte Louisa Maud Rachel Phoebe Bertha Winifred
""".split()

SURNAMES = """
Brown Smith Green Baker Carter Fisher Taylor Walker Harris Clark Lewis Turner Cooper
Wood Hill Parker Hunter Miller Mason Gray Porter Fletcher Shepherd Barker Watson
""".split()

CITIES = """
London Paris Boston Dublin York Rome Vienna Venice Lisbon Berlin Madrid Oxford Chicago
Edinburgh Bristol Geneva Naples Cairo Bombay Denver
""".split()

# ------------------------------------------------------------------------------ adjectives
ADJ_THING = """
old new small big large little heavy long short round broken empty full clean dirty wet
dry warm cold soft hard smooth rough bright dark shiny wooden golden silver iron tiny
huge narrow wide thick thin ancient strange beautiful ugly fine plain simple fancy cheap
expensive precious famous secret favorite lovely pretty ordinary rare useful useless
perfect tall sharp dull loose tight dusty muddy frozen hidden curious enormous delicate
fragile sturdy crooked polished rusty faded elegant splendid peculiar
""".split()

ADJ_COLOR = """
red blue green yellow white black brown gray purple pink scarlet crimson
""".split()

ADJ_FOOD = """
sweet fresh warm hot cold delicious sour bitter salty ripe stale spicy tasty soft hard
little big
""".split()

ADJ_PERSON = """
young old happy sad angry tired hungry thirsty brave clever kind gentle proud shy wise
foolish lazy busy honest friendly polite rude quiet nervous curious careful cheerful lucky
poor rich strong weak sick healthy calm patient famous handsome beautiful cruel generous
grateful jealous lonely worried excited surprised sleepy little tall elderly faithful
noble stubborn anxious cautious humble modest clumsy wicked
""".split()

ADJ_ANIMAL = """
little big old young wild hungry tired brown black white gray fierce tame gentle lazy
clever noisy quiet fat thin lonely frightened
""".split()

ADJ_PLACE = """
old quiet busy crowded lonely distant nearby dark empty small big large beautiful
ancient little narrow wide deep shallow sunny muddy frozen hidden famous strange peaceful
dangerous green gloomy cheerful silent
""".split()

ADJ_ABSTRACT = """
good bad strange simple difficult easy important terrible wonderful clever silly long
short serious funny sudden secret dangerous safe foolish brilliant curious
""".split()

# Adjectives after "was/is" for people ("the baker was tired").
ADJ_PREDICATE_PERSON = ADJ_PERSON

# ------------------------------------------------------------------------------------ verbs
# Transitive verbs: verb spec -> object categories; "+A" means an animal may be the subject.
TRANSITIVE = {
    "see/sees/saw/seen/seeing": "PERSON ANIMAL THING PLACE VEHICLE +A",
    "find/finds/found/found/finding": "THING ANIMAL PERSON FOOD TEXT +A",
    "carry": "THING FOOD",
    "bring/brings/brought/brought/bringing": "THING FOOD TEXT DRINK",
    "take/takes/took/taken/taking": "THING FOOD TEXT",
    "buy/buys/bought/bought/buying": "THING FOOD VEHICLE ANIMAL CLOTHING",
    "sell/sells/sold/sold/selling": "THING FOOD VEHICLE ANIMAL",
    "eat/eats/ate/eaten/eating": "FOOD +A",
    "cook": "FOOD",
    "drink/drinks/drank/drunk/drinking": "DRINK +A",
    "read/reads/read/read/reading": "TEXT",
    "write/writes/wrote/written/writing": "TEXT",
    "open": "THING TEXT",
    "close": "THING",
    "break/breaks/broke/broken/breaking": "THING",
    "fix": "THING VEHICLE",
    "repair": "THING VEHICLE BUILDING",
    "paint": "THING VEHICLE BUILDING",
    "clean": "THING PLACE VEHICLE",
    "wash": "THING ANIMAL VEHICLE CLOTHING",
    "hide/hides/hid/hidden/hiding": "THING TEXT FOOD",
    "lose/loses/lost/lost/losing": "THING TEXT",
    "keep/keeps/kept/kept/keeping": "THING TEXT ANIMAL",
    "meet/meets/met/met/meeting": "PERSON",
    "help": "PERSON",
    "visit": "PERSON PLACE",
    "call": "PERSON ANIMAL",
    "thank": "PERSON",
    "follow": "PERSON ANIMAL VEHICLE +A",
    "watch": "PERSON ANIMAL VEHICLE +A",
    "feed/feeds/fed/fed/feeding": "ANIMAL PERSON",
    "chase": "ANIMAL PERSON VEHICLE +A",
    "catch/catches/caught/caught/catching": "ANIMAL THING VEHICLE +A",
    "hear/hears/heard/heard/hearing": "PERSON ANIMAL MUSIC +A",
    "sing/sings/sang/sung/singing": "MUSIC",
    "build/builds/built/built/building": "BUILDING VEHICLE",
    "leave/leaves/left/left/leaving": "PLACE THING",
    "reach": "PLACE",
    "cross": "PLACE",
    "climb": "PLACE PLANT",
    "enter": "PLACE",
    "explore": "PLACE",
    "remember": "PERSON TEXT PLACE ABSTRACT",
    "forget/forgets/forgot/forgotten/forgetting": "PERSON TEXT ABSTRACT THING",
    "love": "PERSON PLACE ANIMAL FOOD",
    "like": "PERSON PLACE ANIMAL FOOD",
    "miss": "PERSON PLACE ANIMAL",
    "need": "THING FOOD",
    "want": "THING FOOD ANIMAL",
    "borrow": "THING TEXT VEHICLE",
    "drop*": "THING FOOD",
    "throw/throws/threw/thrown/throwing": "THING",
    "pull": "THING VEHICLE",
    "push": "THING VEHICLE",
    "drive/drives/drove/driven/driving": "VEHICLE",
    "ride/rides/rode/ridden/riding": "VEHICLE",
    "steal/steals/stole/stolen/stealing": "THING FOOD ANIMAL VEHICLE +A",
    "wear/wears/wore/worn/wearing": "CLOTHING",
    "make/makes/made/made/making": "FOOD THING",
    "fill": "THING",
    "pack": "THING",
    "count": "THING ANIMAL",
    "describe": "PLACE PERSON THING",
    "discover": "PLACE THING TEXT",
    "explain": "ABSTRACT TEXT",
    "solve": "ABSTRACT",
    "answer": "ABSTRACT",
    "accept": "ABSTRACT",
    "win/wins/won/won/winning": "ABSTRACT",
    "share": "FOOD TEXT",
    "protect": "PERSON ANIMAL PLACE",
    "save": "PERSON ANIMAL",
    "warn": "PERSON",
    "invite": "PERSON",
    "greet": "PERSON",
    "trust": "PERSON",
    "recognize": "PERSON PLACE",
    "admire": "PERSON PLACE THING",
    "study": "TEXT PLACE",
    "check": "THING TEXT",
    "deliver": "TEXT THING",
    "collect": "THING FOOD",
    "gather": "FOOD THING",
    "plant": "PLANT",
    "water": "PLANT ANIMAL",
    "pick": "PLANT FOOD",
    "polish": "THING",
    "wrap*": "THING FOOD",
    "mend": "CLOTHING THING",
    "fetch": "THING FOOD DRINK",
    "guard": "PLACE PERSON THING",
    "bury": "THING",
    "lift": "THING",
    "examine": "THING TEXT",
    "order": "FOOD DRINK",
    "prepare": "FOOD",
    "taste": "FOOD DRINK",
    "smell": "FOOD PLANT +A",
    "scold": "PERSON ANIMAL",
    "rescue": "PERSON ANIMAL",
    "comfort": "PERSON",
    "sketch": "PLACE PERSON",
    "hunt": "ANIMAL +A",
    "tie/ties/tied/tied/tying": "THING",
    "weigh": "THING",
    "measure": "THING",
    "hire": "PERSON",
    "obey": "PERSON",
    "praise": "PERSON",
}

# Intransitive verbs (take an optional place phrase).
INTRANSITIVE = """
walk
run/runs/ran/run/running
sleep/sleeps/slept/slept/sleeping
laugh cry smile wait arrive
sing/sings/sang/sung/singing
dance
swim/swims/swam/swum/swimming
travel work play rest
fall/falls/fell/fallen/falling
shout whisper listen
sit/sits/sat/sat/sitting
stand/stands/stood/stood/standing
jump hurry stay
wake/wakes/woke/woken/waking
shiver pray complain agree disappear
kneel/kneels/knelt/knelt/kneeling
wander linger tremble
""".split()

# Motion verbs followed by "to <place>".
MOTION = """
go/goes/went/gone/going
walk hurry return travel
run/runs/ran/run/running
come/comes/came/come/coming
drive/drives/drove/driven/driving
ride/rides/rode/ridden/riding
fly/flies/flew/flown/flying
sail rush wander move march
""".split()

# Verbs that take a "that" clause.
SAY = """
say/says/said/said/saying
think/thinks/thought/thought/thinking
know/knows/knew/known/knowing
believe hope remember explain promise notice realize
hear/hears/heard/heard/hearing
dream
feel/feels/felt/felt/feeling
""".split()

# Verbs that take "to <verb phrase>".
CONTROL = """
decide want try hope promise plan* refuse agree need learn like
begin/begins/began/begun/beginning
forget/forgets/forgot/forgotten/forgetting
""".split()

# --------------------------------------------------------------------------- closed classes
ADVERB_MANNER = """
quickly slowly quietly carefully suddenly gently happily sadly loudly softly easily
proudly nervously patiently angrily politely bravely eagerly silently immediately
secretly cheerfully anxiously calmly firmly kindly briskly wearily
""".split()

ADVERB_FREQ = "always never often sometimes usually rarely seldom".split()

DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
MONTHS = """january february march april may june july august september october
november december""".split()
SEASONS = "spring summer autumn winter".split()
MEALS = "breakfast lunch dinner supper".split()
PARTS_OF_DAY = "morning afternoon evening".split()

LOC_PREP = """
in near behind beside under inside outside across along through beyond around toward past
by above below
""".split()

CONJ = "and but because while before after when although so until since".split()

MODALS = "can could should must might would will may".split()

ORDINALS = """
first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth
thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth
""".split()

ONES = """zero one two three four five six seven eight nine ten eleven twelve thirteen
fourteen fifteen sixteen seventeen eighteen nineteen""".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()

# Fixed everyday phrases that stand on their own as utterances or clause openers.
OPENERS = """
of course
at last
in the end
to our surprise
after a while
for a moment
without a word
in the meantime
on the other hand
by the way
once upon a time
as usual
for the first time
in fact
""".strip().splitlines()
