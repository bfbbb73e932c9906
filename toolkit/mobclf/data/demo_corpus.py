"""A small synthetic multi-label corpus of Chinese news headlines, for demos and tests that need no real data.

Headlines are filled-in templates (teams, companies, cities, products, people, numbers, ...) over ten topics with a
long tail: ``sports``/``finance``/``tech`` are frequent, ``realty``/``game``/``health`` rare. About one item in five
combines two or three topics (a tech company's share price → tech + finance). To keep the task learnable but not
trivial, topics share vocabulary, many single-topic templates mention another topic's entities, some items carry
a neutral prefix or suffix, a few percent are genuinely ambiguous (their labels are drawn from several readings)
and about 4% carry annotation noise (one label swapped). The companies, people and most teams are made up.

    summary = generate_demo_corpus(Path("demo.jsonl"), n_items=3000, seed=0)
    summary["labels"]  # {"sports": ..., "finance": ..., ...}
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Callable

from mobclf.artifacts import atomic_file

LABELS = (
    "sports", "finance", "tech", "entertainment", "auto", "international", "education", "health", "realty", "game",
)
MIN_CHARS, MAX_CHARS = 12, 40
NEUTRAL_PREFIXES = ("快讯：", "独家：", "【视频】", "最新：", "热点｜")
NEUTRAL_SUFFIXES = ("（图）", "（组图）", " 网友热议", " 专家解读", "（附名单）", " 现场直击")
NEUTRAL_RATE = 0.15
LABEL_NOISE_RATE = 0.04
MAX_ATTEMPTS_PER_ITEM = 20

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐韩冯邓曹彭"
_GIVEN = "伟芳娜敏静磊强军洋勇艳杰涛明超华平刚桂英建文辉力鹏宇浩晨欣然思远一凡子涵"


def _person(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))


def _percent(rng: random.Random) -> str:
    return f"{rng.uniform(0.3, 35):.1f}%" if rng.random() < 0.6 else f"{rng.randint(2, 80)}%"


SLOTS: dict[str, tuple[str, ...] | Callable[[random.Random], str]] = {
    # people and organisations
    "person": _person,
    "star": _person,
    "team": ("湖人", "勇士", "火箭", "凯尔特人", "皇马", "巴萨", "曼联", "拜仁", "北京国安", "上海申花",
             "山东泰山", "广东宏远", "辽宁本钢", "浙江队", "成都蓉城", "切尔西", "利物浦", "尤文"),
    "league": ("中超", "英超", "西甲", "CBA", "NBA", "德甲", "欧冠", "意甲"),
    "event": ("男子100米", "女子网球单打", "羽毛球男单", "200米自由泳", "斯诺克大师赛", "乒乓球女单", "跳水10米台",
              "马拉松"),
    "techco": ("华芯科技", "云图智能", "星河电子", "蓝鲸网络", "极光软件", "天穹AI", "启明半导体", "智讯通信",
               "数元科技", "灵犀互联"),
    "company": ("东方钢铁", "长城重工", "华南物流", "江海航运", "中原食品", "北方建材", "瑞丰医药", "金桥能源",
                "新禾农业", "安泰保险"),
    "bank": ("工商银行", "建设银行", "招商银行", "江南银行", "中原银行"),
    "carbrand": ("远航汽车", "华驰汽车", "北辰汽车", "凌云汽车", "极速汽车", "江南汽车", "星驰汽车"),
    "carmodel": lambda rng: rng.choice("XSLMQ") + str(rng.randint(3, 9)) + rng.choice(("", " EV", " Pro", " Max")),
    "developer": ("万家地产", "恒远置业", "绿城置地", "金地集团", "华润置地", "远洋建设"),
    "gameco": ("米哈游", "网易游戏", "光年互娱", "幻境工作室", "莉莉丝", "雷霆游戏"),
    "game": ("星穹远征", "王者荣耀", "原神", "逆水寒", "黑神话", "山海经传", "幻塔", "蛋仔派对", "无尽冬日"),
    "esport_team": ("EDG", "RNG", "JDG", "TES", "WBG", "LNG", "BLG"),
    "university": ("清华大学", "北京大学", "浙江大学", "复旦大学", "武汉大学", "中山大学", "南京大学", "四川大学"),
    "hospital": ("协和医院", "华西医院", "瑞金医院", "湘雅医院", "市人民医院", "儿童医院"),
    "country": ("美国", "日本", "德国", "法国", "英国", "俄罗斯", "印度", "巴西", "韩国", "澳大利亚", "南非",
                "埃及", "土耳其", "墨西哥", "印尼"),
    "foreign_city": ("纽约", "东京", "巴黎", "伦敦", "柏林", "首尔", "悉尼", "开罗", "孟买", "里约"),
    "city": ("北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "重庆", "苏州", "天津",
             "长沙", "郑州", "青岛", "厦门"),
    # things
    "product": ("折叠屏手机", "智能手表", "AR眼镜", "平板电脑", "扫地机器人", "无线耳机", "笔记本电脑", "VR头显"),
    "feature": ("卫星通话", "夜景拍摄", "AI助手", "百瓦快充", "实时翻译"),
    "chip": ("7nm", "5nm", "3nm", "AI", "GPU", "5G基带"),
    "sector": ("新能源", "半导体", "白酒", "医药", "银行", "军工", "光伏", "消费电子"),
    "title": ("长夜", "星海", "追光者", "归途", "风起时", "无声", "南方", "孤岛", "少年行", "山河故人", "逆光"),
    "show": ("中国好声音", "奔跑吧", "乘风破浪", "这就是街舞", "歌手", "脱口秀大会"),
    "award": ("金鸡奖", "金马奖", "华表奖", "金曲奖", "百花奖"),
    "role": ("男主角", "女主角", "导演", "新人", "男配角"),
    "disease": ("高血压", "糖尿病", "流感", "近视", "心脏病", "阿尔茨海默病", "骨质疏松", "抑郁症"),
    "food": ("燕麦", "坚果", "西兰花", "鱼类", "豆制品", "绿茶"),
    "activity": ("快走", "慢跑", "游泳", "骑车", "跳绳"),
    "major": ("计算机", "人工智能", "临床医学", "金融", "法学", "电子信息"),
    "issue": ("气候变化", "粮食安全", "核问题", "难民", "贸易争端", "海洋污染"),
    "result": ("战胜", "险胜", "逼平", "负于", "大胜", "爆冷击败"),
    "move": ("上涨", "下跌", "微涨", "收跌", "大涨", "跳水"),
    "change": ("增长", "下降", "大增", "下滑"),
    "month": tuple(f"{m}月" for m in range(1, 13)),
    # numbers
    "num": lambda rng: str(rng.choice((rng.randint(2, 99), rng.randint(100, 999), rng.randint(1000, 9999)))),
    "small": lambda rng: str(rng.randint(2, 12)),
    "year": lambda rng: str(rng.randint(2015, 2026)),
    "province_count": lambda rng: str(rng.randint(5, 31)),
    "index_pct": lambda rng: f"{rng.uniform(0.1, 3.5):.2f}%",
    "pct": _percent,
    "bp": lambda rng: str(rng.choice((5, 10, 15, 20, 25, 50))),
    "price": lambda rng: str(rng.choice((rng.randint(9, 99) * 100 - 1, rng.randint(5, 40) * 1000))),
    "wan": lambda rng: f"{rng.randint(6, 60)}.{rng.randint(0, 9)}8",
    "score": lambda rng: f"{rng.randint(0, 5)}比{rng.randint(0, 4)}",
    "points": lambda rng: f"{rng.randint(88, 130)}:{rng.randint(85, 128)}",
    "rating": lambda rng: f"{rng.uniform(5.5, 9.6):.1f}",
    "magnitude": lambda rng: f"{rng.uniform(4.5, 7.8):.1f}",
}


def _group(labels: str | tuple[tuple[str, ...], ...], weight: float, *templates: str) -> dict:
    """A family of templates sharing one label set; ``labels`` may list several readings (an ambiguous family)."""
    readings = (tuple(labels.split("+")),) if isinstance(labels, str) else labels
    return {"readings": readings, "weight": weight, "templates": templates}


# Weights are relative; they set the long tail (sports ~ 25% of items, game ~ 2%).
TEMPLATE_GROUPS = (
    _group("sports", 0.22,
           "{league}第{small}轮：{team}主场{result}{team2}", "{team}{points}力克{team2} {person}独得{small}分",
           "{person}伤愈复出 {team}迎来{small}连胜", "{team}官方宣布签下{person} 合同为期{small}年",
           "{person}夺得{event}冠军 创造个人最好成绩", "NBA季后赛：{team}{points}淘汰{team2}晋级",
           "{league}{team}主帅{person}下课 {person2}接任", "世预赛国足{result}{country} 出线形势明朗",
           "{person}打破{event}全国纪录", "{techco}冠名{league}：{team}{score}{team2}",
           "{team}球星{person}代言{product} 身价再涨", "{city}马拉松鸣枪开跑 {num}名选手参赛",
           "{team}股东大会通过新球场计划 {person}出席"),
    _group("finance", 0.16,
           "央行宣布下调存款准备金率{bp}个基点", "A股收评：沪指{move}{index_pct} {sector}板块领涨",
           "{company}发布年报 净利润同比{change}{pct}", "人民币兑美元中间价{move}{bp}个基点",
           "{month}CPI同比上涨{index_pct} 物价总体平稳", "{bank}：一季度新增贷款{num}亿元",
           "基金经理{person}：下半年看好{sector}板块", "{company}拟募资{num}亿元 用于扩大产能",
           "港股收盘恒指{move}{index_pct} 成交额{num}亿港元", "{city}体育产业规模达{num}亿元 同比{change}{pct}",
           "{sector}概念股集体{move} {company}涨停", "{bank}发布报告：{sector}行业景气度回升",
           "{company}董事长{person}：明年营收目标{num}亿元"),
    _group("tech", 0.14,
           "{techco}发布新一代{chip}芯片 性能提升{pct}", "{techco}推出{product} 售价{price}元起",
           "5G基站累计突破{num}万个 覆盖{province_count}个省份", "{techco}开源大模型 参数规模达{num}亿",
           "iPhone新机曝光：支持{feature} 或将{month}发布", "{techco}云服务宕机{small}小时 大量App无法访问",
           "研究团队研发出新型固态电池 续航提升{pct}", "{city}建成全国首个6G试验网",
           "{techco}CEO{person}：AI将改变每一个行业", "{techco}被曝泄露{num}万条用户数据",
           "{product}评测：{feature}体验如何", "{techco}与{university}共建AI联合实验室",
           "{techco}发布{product} 主打{feature}"),
    _group("entertainment", 0.10,
           "{star}新专辑《{title}》首周销量破{num}万", "电影《{title}》票房突破{small}亿 {star}演技获赞",
           "{star}{star2}恋情曝光 双方工作室回应", "{star}担任《{show}》导师 新一季{month}开播",
           "第{small}届{award}揭晓 {star}获最佳{role}", "{star}{city}演唱会门票{small}分钟售罄",
           "网剧《{title}》播放量破{num}亿 豆瓣评分{rating}", "{star}宣布暂别娱乐圈 粉丝不舍",
           "{star}开着{carbrand}新车现身机场", "{star}{city}豪宅曝光 装修低调奢华"),
    _group("auto", 0.06,
           "{carbrand}{carmodel}正式上市 售价{wan}万元起", "{month}乘用车销量{num}万辆 同比{change}{pct}",
           "新能源车渗透率突破{pct} {carbrand}领跑", "{carbrand}召回{num}辆{carmodel} 涉及刹车隐患",
           "试驾{carbrand}{carmodel}：空间宽敞的城市SUV", "{city}车展开幕 {small}款新车全球首发",
           "{carbrand}宣布全系降价{small}万元", "{city}新增{num}个快充站 车主充电更方便"),
    _group("international", 0.06,
           "{country}举行大选 反对党赢得多数席位", "{country}总统访问{country2} 双方签署{small}项协议",
           "联合国安理会就{issue}问题召开紧急会议", "{country}{foreign_city}发生{magnitude}级地震",
           "{country}与{country2}就{issue}举行新一轮谈判", "G20峰会在{foreign_city}开幕 聚焦{issue}",
           "{country}宣布对{country2}实施新一轮制裁", "{foreign_city}爆发大规模抗议 数万人走上街头"),
    _group("education", 0.035,
           "{year}年高考报名人数达{num}万", "{university}公布{year}年录取分数线",
           "考研报名人数创新高 {major}专业最热门", "{university}新增{major}本科专业",
           "{city}中小学下周开学 作业量明显减少", "{city}课外培训机构减少{pct} 家长怎么看",
           "留学生人数增长{pct} {country}最受欢迎", "教育部：严禁中小学按考试成绩排名"),
    _group("health", 0.018,
           "研究发现每天{activity}{small}分钟可降低{disease}风险", "{city}报告{num}例{disease}病例 专家提醒防护",
           "流感进入高发期 {hospital}门诊量增加{pct}", "医保目录新增{small}种药品 {disease}患者受益",
           "专家：长期熬夜易诱发{disease}", "冬季养生：多吃{food}有助预防{disease}",
           "新型{disease}疫苗进入三期临床试验"),
    _group("realty", 0.012,
           "{city}{month}新房成交{num}套 环比{change}{pct}", "{city}出台新政 首套房首付比例降至{pct}",
           "{city}二手房挂牌价连续{small}个月下跌", "{developer}{city}项目开盘 均价{price}元/平方米",
           "{city}土地拍卖{small}宗地块 总价{num}亿元"),
    _group("game", 0.008,
           "《{game}》手游首月流水突破{small}亿", "{gameco}发布新作《{game}》 支持PS5和PC",
           "电竞：{esport_team}夺得年度总冠军", "《{game}》版本更新 新增{small}个英雄",
           "Steam夏季促销开启 《{game}》{small}折"),
    # Two or three topics at once.
    _group("tech+finance", 0.04,
           "{techco}股价大涨{pct} 新款{product}预订火爆", "{techco}三季度营收{num}亿元 AI业务增长{pct}",
           "{techco}拟在科创板上市 募资{num}亿元", "{techco}市值突破{num}亿 {chip}芯片订单饱满"),
    _group("auto+finance", 0.015,
           "{carbrand}一季度净利润{change}{pct} 销量{num}万辆", "{carbrand}港股上市首日涨{pct}"),
    _group("auto+tech", 0.015,
           "{carbrand}发布L{small}级自动驾驶 搭载{techco}芯片", "{techco}宣布造车 首款{carmodel}明年量产"),
    _group("realty+finance", 0.01,
           "房企{developer}债务重组 股价暴跌{pct}", "{city}楼市降温 {bank}房贷余额减少{num}亿元"),
    _group("sports+entertainment", 0.02,
           "{person}与{star}同台 亮相《{show}》", "{star}现身{league}赛场为{person}助威"),
    _group("game+tech", 0.006,
           "{techco}推出云游戏平台 《{game}》5G手机流畅运行", "{gameco}用AI生成《{game}》关卡"),
    _group("game+finance", 0.004, "{gameco}上半年营收{num}亿 《{game}》贡献过半"),
    _group("international+finance", 0.02,
           "{country}央行加息{bp}个基点 全球股市{move}", "美元指数{move}{index_pct} {country}货币承压"),
    _group("international+sports", 0.015,
           "{country}宣布申办{year}年奥运会 {foreign_city}为候选城市", "{foreign_city}奥运会：中国代表团获{small}金"),
    _group("health+education", 0.008, "近视率{pct}：{city}中小学开展护眼行动", "{university}研究：久坐学生易患{disease}"),
    _group("education+tech", 0.008, "AI进课堂：{city}{small}所学校试点{product}教学"),
    _group("entertainment+game", 0.004, "{star}代言《{game}》 预约人数破{num}万"),
    _group("international+tech+finance", 0.01, "{country}限制{chip}芯片出口 {techco}股价跌{pct}"),
    _group("international+auto+finance", 0.006, "{country}对中国电动车加征{pct}关税 {carbrand}股价下挫"),
    _group("game+tech+finance", 0.003, "{gameco}发布AI游戏引擎 股价{move}{pct}"),
    # Ambiguous: the same kind of headline is labelled by one of several plausible readings.
    _group((("auto",), ("tech",), ("auto", "tech")), 0.012,
           "{techco}发布智能座舱 {carbrand}{carmodel}首发搭载", "{carbrand}{carmodel}升级车机系统 支持{feature}"),
    _group((("finance",), ("tech",)), 0.008, "{techco}宣布裁员{pct} 聚焦核心业务", "{techco}收购{company} 交易额{num}亿元"),
    _group((("entertainment",), ("sports",)), 0.006, "{star}与{person}大婚 {team}队友到场祝贺"),
    _group((("health",), ("sports",)), 0.004, "{person}跟腱手术成功 {hospital}专家：恢复需{small}个月"),
    _group((("realty",), ("finance",), ("realty", "finance")), 0.006,
           "{developer}发布业绩 {city}项目销售{num}亿元", "{bank}：{city}房贷利率下调{bp}个基点"),
    _group((("international",), ("finance",)), 0.006, "{country}经济数据不及预期 股市{move}{index_pct}"),
    _group((("education",), ("tech",)), 0.004, "{university}发布{product}教学平台 {num}名学生试用"),
    _group((("game",), ("entertainment",)), 0.004, "{star}直播玩《{game}》 观看人数破{num}万"),
)

_SLOT_PATTERN = re.compile(r"\{([a-z_]+?)\d?\}")


def _fill(template: str, rng: random.Random) -> str:
    """Fill every ``{slot}``; numbered repeats (``{team2}``) draw from the same pool but differ from the first."""
    used: dict[str, set[str]] = {}

    def draw(match: re.Match) -> str:
        slot = match.group(1)
        source = SLOTS[slot]
        taken = used.setdefault(slot, set())
        for _ in range(5):
            value = source(rng) if callable(source) else rng.choice(source)
            if value not in taken:
                break
        taken.add(value)
        return value

    return _SLOT_PATTERN.sub(draw, template)


def _headline(group: dict, rng: random.Random) -> str:
    text = _fill(rng.choice(group["templates"]), rng)
    if rng.random() < NEUTRAL_RATE:
        text = rng.choice(NEUTRAL_PREFIXES) + text if rng.random() < 0.5 else text + rng.choice(NEUTRAL_SUFFIXES)
    return text


def _label_frequencies() -> dict[str, float]:
    """Expected share of items carrying each label, from the template weights."""
    frequencies = dict.fromkeys(LABELS, 0.0)
    for group in TEMPLATE_GROUPS:
        for reading in group["readings"]:
            for label in reading:
                frequencies[label] += group["weight"] / len(group["readings"])
    return frequencies


LABEL_FREQUENCIES = _label_frequencies()


def _mislabel(labels: list[str], rng: random.Random) -> list[str]:
    """Annotation noise: one label swapped for another, drawn as often as labels occur (rare ones get little)."""
    others = [label for label in LABELS if label not in labels]
    replacement = rng.choices(others, [LABEL_FREQUENCIES[label] for label in others])[0]
    position = rng.randrange(len(labels))
    return labels[:position] + [replacement] + labels[position + 1:]


def generate_demo_corpus(path: Path, n_items: int = 3000, seed: int = 0) -> dict:
    """Write ``n_items`` unique headlines as JSONL to ``path`` and return counts per label and cardinality."""
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")
    rng = random.Random(seed)
    weights = [group["weight"] for group in TEMPLATE_GROUPS]
    items: list[dict] = []
    seen: set[str] = set()
    duplicates = mislabelled = 0
    for _ in range(n_items * MAX_ATTEMPTS_PER_ITEM):
        if len(items) == n_items:
            break
        group = rng.choices(TEMPLATE_GROUPS, weights)[0]
        labels = list(rng.choice(group["readings"]))
        noisy = rng.random() < LABEL_NOISE_RATE
        if noisy:
            labels = _mislabel(labels, rng)
        text = _headline(group, rng)
        if not MIN_CHARS <= len(text) <= MAX_CHARS:
            continue
        if text in seen:
            duplicates += 1
            continue
        seen.add(text)
        mislabelled += noisy
        items.append({"text": text, "labels": labels})
    if len(items) < n_items:
        raise ValueError(f"could only make {len(items)} unique headlines of {n_items} asked for; ask for fewer")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:  # a full disk or a kill leaves no cut corpus that looks finished
        for item in items:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")

    counts = Counter(label for item in items for label in item["labels"])
    return {
        "items": n_items,
        "labels": {label: counts[label] for label in sorted(LABELS, key=lambda label: -counts[label])},
        "cardinality": round(sum(counts.values()) / n_items, 3),
        "max_labels_per_item": max(len(item["labels"]) for item in items),
        "duplicates_removed": duplicates,
        "mislabelled": mislabelled,
    }


# ---- articles with hundreds of labels ---------------------------------------------------------------------------

_WORD_CHARS = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
               "而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性"
               "好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向"
               "道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件")


def _label_names(n_labels: int) -> list[str]:
    """``topic-NNN`` fine labels spread over the demo's ten topics (sports-000, finance-001, ...)."""
    return [f"{LABELS[i % len(LABELS)]}-{i:03d}" for i in range(n_labels)]


def generate_article_corpus(path: Path, n_items: int, n_labels: int = 605, seed: int = 0) -> dict:
    """Write ``n_items`` news-like articles with up to ``n_labels`` fine labels as JSONL to ``path``, streaming (memory
    does not grow with ``n_items``), and return counts per label and the label cardinality.

    Shaped like a mobile news app's labelled articles: a Zipf long tail over the labels (with 605 labels the most
    frequent is on ~18% of articles, the rarest on ~1 in 4,000), 1–3 labels per article (~1.6 on average; a second
    label is usually of the same topic), and 4–10 sentences (~190 characters in all), each a demo headline followed by
    two words of one of the article's labels (every label has its own six), so that the labels are learnable.
    """
    if n_items < 1 or n_labels < 1:
        raise ValueError(f"n_items and n_labels must be at least 1, got {n_items} and {n_labels}")
    rng = random.Random(seed)
    names = _label_names(n_labels)
    weights = [1 / (rank + 1) for rank in range(n_labels)]
    by_topic: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        by_topic.setdefault(name.rsplit("-", 1)[0], []).append(index)
    words = [["".join(rng.choice(_WORD_CHARS) for _ in range(rng.randint(2, 3))) for _ in range(6)]
             for _ in range(n_labels)]
    group_weights = [group["weight"] for group in TEMPLATE_GROUPS]
    counts: Counter = Counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        for _ in range(n_items):
            first = rng.choices(range(n_labels), weights)[0]
            chosen = [first]
            for chance in (0.5, 0.25):
                if rng.random() >= chance or len(chosen) == n_labels:
                    break
                topic = by_topic[names[first].rsplit("-", 1)[0]]
                pool = topic if rng.random() < 0.7 and len(topic) > len(chosen) else range(n_labels)
                pool_weights = [weights[i] for i in pool]
                extra = first
                while extra in chosen:
                    extra = rng.choices(pool, pool_weights)[0]
                chosen.append(extra)
            sentences = []
            for _ in range(rng.randint(4, 10)):
                label = rng.choice(chosen)
                headline = _headline(rng.choices(TEMPLATE_GROUPS, group_weights)[0], rng)
                sentences.append(headline + "，" + "".join(rng.sample(words[label], 2)) + "。")
            labels = [names[i] for i in chosen]
            counts.update(labels)
            handle.write(json.dumps({"text": "".join(sentences), "labels": labels}, ensure_ascii=False) + "\n")
    return {"items": n_items, "labels": dict(counts.most_common()),
            "cardinality": round(sum(counts.values()) / n_items, 3)}
