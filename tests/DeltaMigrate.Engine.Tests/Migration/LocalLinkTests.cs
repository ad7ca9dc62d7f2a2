using System.Net;
using DeltaMigrate.Engine.Migration;

namespace DeltaMigrate.Engine.Tests.Migration;

public sealed class LocalLinkTests
{
    [Fact]
    public void Parse_ReadsListenThenConnect()
    {
        var link = LocalLink.Parse(" 10.9.0.1 , 10.9.0.2 ");

        Assert.Equal(IPAddress.Parse("10.9.0.1"), link.Listen);
        Assert.Equal(IPAddress.Parse("10.9.0.2"), link.Connect);
    }

    [Theory]
    [InlineData("10.9.0.1")]
    [InlineData("10.9.0.1,")]
    [InlineData("10.9.0.1,10.9.0.2,10.9.0.3")]
    [InlineData("host2,10.9.0.2")]
    public void Parse_RejectsAnythingButTwoAddresses(string value)
    {
        var error = Assert.Throws<EngineException>(() => LocalLink.Parse(value));

        Assert.Equal("InvalidLocalLink", error.ErrorId);
        Assert.Contains(LocalLink.EnvironmentVariable, error.Message);
        Assert.Contains(value, error.Message);
    }

    [Fact]
    public void UriHost_BracketsIPv6()
    {
        Assert.Equal("10.9.0.2", LocalLink.UriHost(IPAddress.Parse("10.9.0.2")));
        Assert.Equal("[::1]", LocalLink.UriHost(IPAddress.IPv6Loopback));
    }
}
