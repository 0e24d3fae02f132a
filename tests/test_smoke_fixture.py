from tests.helpers import Chat, file_request


async def test_intake_files_a_request(engine):
    chat = Chat(engine)
    text = await file_request(chat)
    assert "Submitted as DR-13" in text
